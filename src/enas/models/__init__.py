"""Torch modules of the search spaces (layer 1): one module per space, supernet and fixed model in one class.

``build_image_model(name, space, net, ...)`` builds the image network of a space from a ``NetConfig``; each
model module registers its builder in ``IMAGE_MODELS`` (name -> callable), so code outside ``models/`` never
branches on a space's name. ``count_params(model)`` counts a network's parameters as reported everywhere.
"""

from __future__ import annotations

from typing import Callable

from torch import nn


def _nb201(space, net, *, num_classes: int, in_channels: int, arch) -> nn.Module:
    from .nb201 import NB201Net
    return NB201Net(space, channels=net.channels, cells_per_stage=net.num_layers, num_classes=num_classes,
                    in_channels=in_channels, arch=arch, keep_prob=net.keep_prob)


IMAGE_MODELS: dict[str, Callable[..., nn.Module]] = {"nb201": _nb201}


def build_image_model(name: str, space, net, *, num_classes: int, in_channels: int, arch=None) -> nn.Module:
    """The supernet (``arch=None``) or fixed model of space ``name`` shaped by ``net`` (a ``NetConfig``)."""
    try:
        builder = IMAGE_MODELS[name]
    except KeyError:
        raise ValueError(f"{name} is not an image space") from None
    return builder(space, net, num_classes=num_classes, in_channels=in_channels, arch=arch)


def count_params(model: nn.Module) -> int:
    """Parameters of the network used at test time (the auxiliary head is excluded, as is usual)."""
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("aux_head"))
