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
    from ..spaces import model_builder
    builder = IMAGE_MODELS.get(name) or model_builder(name)  # a space of one's own: enas.register_space(mod, model)
    if builder is None:
        raise ValueError(f"{name} is not an image space with a network (register one with "
                         "enas.register_space(module, model))")
    return builder(space, net, num_classes=num_classes, in_channels=in_channels, arch=arch)


def count_params(model: nn.Module) -> int:
    """Parameters of the network used at test time (the auxiliary head is excluded, as is usual)."""
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("aux_head"))


class Classifier(nn.Module):
    """A fixed model that behaves like a torchvision / timm classifier, for one's own training loop.

    ``forward(x)`` returns the logits alone outside training (``model.eval()``); while training it returns
    ``(logits, aux_logits)`` when the network has an auxiliary head (``final_net.aux_weight > 0``), else the logits
    alone (as torchvision's Inception does). The package's own networks keep ``forward(x, arch) -> (logits, aux)``
    (the supernet needs the architecture); this wrapper holds one as ``.net``, so its ``state_dict`` keys are
    the run's ``model.pt`` keys prefixed by ``net.``. ``drop_path_prob`` is passed on while training."""

    def __init__(self, net: nn.Module):
        super().__init__()
        if getattr(net, "arch", None) is None:
            raise ValueError("Classifier wraps a fixed model (built with an architecture), not a supernet")
        self.net = net

    def forward(self, x, drop_path_prob: float = 0.0):
        if not self.training:
            return self.net(x)[0]
        logits, aux = self.net(x, drop_path_prob=drop_path_prob) if drop_path_prob else self.net(x)
        return logits if aux is None else (logits, aux)
