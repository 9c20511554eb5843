"""The op builders of the CNN spaces: name -> builder.

Every op is a module ``op(x, stride=1)``: the stride is an argument of the call, not of the module, so a
supernet can run the same weights at stride 2 (on a reduction cell's inputs) and at stride 1 (on its inner
nodes). Convolutions follow the reference: ReLU -> conv -> BN, He-normal weights, no conv bias.

``OPS`` is a read-only view of the one op table (``enas.spaces.base``): the built-in builders below plus every
op added by ``register_op`` (``enas.register_op``), which is the only way to add one: registering once makes
the op known to the spaces (``space_cfg.ops``), to ``build`` and to the collapse rule.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .spaces.base import OpNames, op_spec, register_op, registered_ops, unregister_op  # noqa: F401 - re-exported


def bn(c: int, affine: bool = True) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1, affine=affine)


def conv_weight(c_out: int, c_in: int, k: int) -> nn.Parameter:
    w = torch.empty(c_out, c_in, k, k)
    nn.init.kaiming_normal_(w, mode="fan_in", nonlinearity="relu")
    return nn.Parameter(w)


class ReLUConvBN(nn.Module):
    """ReLU -> k x k conv (optionally dilated) -> BN."""

    def __init__(self, c_in: int, c_out: int, k: int, dilation: int = 1):
        super().__init__()
        self.k, self.dilation = k, dilation
        self.weight = conv_weight(c_out, c_in, k)
        self.bn = bn(c_out)

    def forward(self, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
        pad = self.dilation * (self.k - 1) // 2
        return self.bn(F.conv2d(F.relu(x), self.weight, stride=stride, padding=pad, dilation=self.dilation))


class SepConv(nn.Module):
    """ReLU -> depthwise k x k -> pointwise 1 x 1 -> BN, applied ``repeats`` times (2 in ENAS, 1 for dil_conv).

    The stride applies to the first depthwise convolution only.
    """

    def __init__(self, c_in: int, c_out: int, k: int, repeats: int = 2, dilation: int = 1):
        super().__init__()
        self.k, self.dilation, self.repeats = k, dilation, repeats
        self.depthwise = nn.ParameterList()
        self.pointwise = nn.ParameterList()
        self.bns = nn.ModuleList()
        c = c_in
        for _ in range(repeats):
            self.depthwise.append(conv_weight(c, 1, k))
            self.pointwise.append(conv_weight(c_out, c, 1))
            self.bns.append(bn(c_out))
            c = c_out

    def forward(self, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
        pad = self.dilation * (self.k - 1) // 2
        for r in range(self.repeats):
            c = x.shape[1]
            x = F.conv2d(F.relu(x), self.depthwise[r], stride=stride if r == 0 else 1, padding=pad,
                         dilation=self.dilation, groups=c)
            x = self.bns[r](F.conv2d(x, self.pointwise[r]))
        return x


class Pool(nn.Module):
    """3 x 3 average or max pooling with SAME padding (padding excluded from averages). No weights."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def forward(self, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
        if self.kind == "avg":
            return F.avg_pool2d(x, 3, stride=stride, padding=1, count_include_pad=False)
        return F.max_pool2d(x, 3, stride=stride, padding=1)


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing alternate pixels: ReLU, two offset 1 x 1 stride-2 convs, concat, BN."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.w1 = conv_weight(c_out // 2, c_in, 1)
        self.w2 = conv_weight(c_out - c_out // 2, c_in, 1)
        self.bn = bn(c_out)

    def forward(self, x: torch.Tensor, stride: int = 2) -> torch.Tensor:
        x = F.relu(x)
        a = F.conv2d(x, self.w1, stride=2)
        shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        b = F.conv2d(shifted, self.w2, stride=2)
        return self.bn(torch.cat([a, b], dim=1))


class Identity(nn.Module):
    """Identity at stride 1; a factorized reduction (which has weights) at stride 2."""

    def __init__(self, c: int, reducible: bool = True):
        super().__init__()
        self.reduce = FactorizedReduce(c, c) if reducible else None

    def forward(self, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
        if stride == 1:
            return x
        if self.reduce is None:
            raise RuntimeError("identity at stride 2 needs reducible=True")
        return self.reduce(x)


# name -> builder(channels, reducible) ; reducible is False where the op never runs at stride 2, so that
# an identity there owns no unused weights.
BUILTIN_OPS: dict[str, Callable[[int, bool], nn.Module]] = {
    "sep_conv_3x3": lambda c, r: SepConv(c, c, 3),
    "sep_conv_5x5": lambda c, r: SepConv(c, c, 5),
    "sep_conv_7x7": lambda c, r: SepConv(c, c, 7),
    "dil_conv_3x3": lambda c, r: SepConv(c, c, 3, repeats=1, dilation=2),
    "dil_conv_5x5": lambda c, r: SepConv(c, c, 5, repeats=1, dilation=2),
    "conv_3x3": lambda c, r: ReLUConvBN(c, c, 3),
    "conv_1x1": lambda c, r: ReLUConvBN(c, c, 1),
    "avg_pool_3x3": lambda c, r: Pool("avg"),
    "max_pool_3x3": lambda c, r: Pool("max"),
    "identity": lambda c, r: Identity(c, r),
}


class OpTable(Mapping):
    """name -> builder for every op ``build`` can make: the built-in ones, then the registered ones (a live view;
    add ops with ``register_op``)."""

    def __getitem__(self, name: str) -> Callable[[int, bool], nn.Module]:
        if name in BUILTIN_OPS:
            return BUILTIN_OPS[name]
        spec = op_spec(name)
        if spec is None or spec.builder is None:
            raise KeyError(name)
        return spec.builder

    def __iter__(self) -> Iterator[str]:
        return iter([*BUILTIN_OPS, *(n for n in registered_ops() if n not in BUILTIN_OPS)])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __setitem__(self, name: str, builder) -> None:
        raise TypeError(f"ops.OPS is read-only; add the op {name!r} with enas.register_op(name, builder, "
                        "parameter_free=...)")


OPS = OpTable()
# the parameter-free ops build can make (avg_pool_3x3, max_pool_3x3, identity and registered ones); live
PARAMETER_FREE = OpNames(lambda: [op for op in OPS if (op_spec(op) is not None and op_spec(op).parameter_free)])


def build(name: str, channels: int, reducible: bool = True) -> nn.Module:
    try:
        builder = OPS[name]
    except KeyError:
        raise ValueError(f"unknown op {name!r}; known ops: {', '.join(OPS)}") from None
    module = builder(channels, reducible)
    if not isinstance(module, nn.Module):
        raise ValueError(f"op {name!r}: its builder returned {type(module).__name__}, not a torch.nn.Module")
    return module
