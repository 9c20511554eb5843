"""An op of one's own in the ENAS micro space: register it once, search with it, train the result.

Run it (about 15 s on 2 CPU cores, no download: the embedded 8x8 digits)::

    python examples/custom_op.py [RUN_DIR]

Two ops are added: ``gelu_conv_3x3`` (GELU, depthwise 3x3, pointwise 1x1, batch norm: it has weights) and
``shift`` (moves the image one pixel right and down: no weights, so the collapse alarm counts it as parameter-free
like pooling and identity). ``enas.register_op`` puts each in the one op table that the spaces, config
validation, the networks, the drawings and the collapse alarm read.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn

import enas
from enas import api, config

OPS = "sep_conv_3x3,gelu_conv_3x3,shift,identity"


class GeluConv(nn.Module):
    """GELU -> depthwise 3x3 (at the given stride) -> pointwise 1x1 -> BN. Keeps the channel count."""

    def __init__(self, channels: int):
        super().__init__()
        self.depthwise = nn.Conv2d(channels, channels, 3, padding=1, groups=channels, bias=False)
        self.pointwise = nn.Conv2d(channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
        x = F.conv2d(F.gelu(x), self.depthwise.weight, stride=stride, padding=1, groups=x.shape[1])
        return self.bn(self.pointwise(x))


class Shift(nn.Module):
    """One pixel right and down (zeros come in); at stride 2 every other pixel. No weights."""

    def forward(self, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
        x = F.pad(x, (1, 0, 1, 0))[:, :, :-1, :-1]
        return x if stride == 1 else x[:, :, ::stride, ::stride]


def register() -> None:
    """Every op is built as ``builder(channels, reducible)`` and called as ``module(x, stride)``; at stride 2 it
    must halve the height and width (``reducible`` says whether it may be asked to)."""
    enas.register_op("gelu_conv_3x3", lambda channels, reducible: GeluConv(channels))
    enas.register_op("shift", lambda channels, reducible: Shift(), parameter_free=True)


def main(out: str | None = None, epochs: int = 2) -> dict:
    register()
    cfg = config.load_config("tiny", overrides=[f"space_cfg.ops={OPS}", f"shared.epochs={epochs}",
                                                "run.report=false"])
    result = api.search(cfg, out=out)  # search, derive, retrain the best cell (search.retrain)
    arch = api.load_arch(result["run_dir"], cfg)
    print(enas.spaces.get("micro").describe(arch))
    print(f"test accuracy {result['test_acc']:.3f} with {result['params']} parameters; run in {result['run_dir']}")
    return result


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
