"""Macro-space network: the supernet (every op of every layer, shared) and the fixed model (chosen ops only).

One class serves both, built from the same layer code with identical parameter names, so a fixed model loads a
plain subset of a supernet's ``state_dict`` and computes the same function for its architecture.

Layout (as in the reference ``general_child.py``):

* stem: 3x3 conv (in_channels -> C) -> BN; its output is node 0.
* layer ``l`` reads node ``l`` (the previous output) and runs its op:
  ``conv_kxk`` = ReLU-1x1-BN -> ReLU-kxk conv-BN; ``sep_conv_kxk`` = ReLU-1x1-BN -> ReLU-depthwise kxk-pointwise
  1x1-BN (separable in both modes: the reference's final net builds these as regular convs, bug B3);
  pooling = ReLU-1x1-BN -> 3x3 pool. Each op has its own weights and the chosen one really runs (bug B2).
* layers ``l > 0`` then combine: ReLU -> 1x1 conv -> BN over the concatenation ``[chosen skip sources, op output]``
  (the reference final's form, used in search too), even when no skip is chosen (then a C -> C 1x1). The 1x1
  weight is stored as one ``[C, C, 1, 1]`` block per possible source (``combine.<j>``) plus one for the op
  output (``combine.op``); the supernet concatenates the blocks of the sampled sources and runs one conv, the
  fixed model holds only its own blocks. Layer 0 has no skips and no combine (as in the reference).
* after layers ``pd - 1`` and ``2 pd - 1`` (``pd = L // 3``) every node still needed, stem included, is
  halved in resolution by its own FactorizedReduce (one per source per pool point).
* head: ReLU -> global average pool -> dropout(1 - keep_prob) -> linear (no bias, as in the reference).

Channel policy: ``double_channels=True`` doubles C at each pool point (the reference's final network);
``False`` keeps C constant (the reference's search). The default (None) follows the reference: constant for
the supernet, doubling for a fixed model. A fixed model that inherits a supernet's weights must be built with
the supernet's policy (parameter names agree either way, shapes only under the same policy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops as O
from ..spaces.base import ArchError
from ..spaces.macro import MacroArch, MacroSpace, pool_layers, validate


class Branch(nn.Module):
    """One op of a macro layer: ReLU-1x1-BN (``inp``) then the op body (``body(x, stride)``)."""

    def __init__(self, c: int, body: nn.Module):
        super().__init__()
        self.inp = O.ReLUConvBN(c, c, 1)
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.inp(x), 1)


def _kernel(name: str) -> int:
    return int(name.rsplit("_", 1)[1].split("x")[0])


def build_branch(name: str, c: int) -> Branch:
    if name.startswith("sep_conv_"):
        return Branch(c, O.SepConv(c, c, _kernel(name), repeats=1))
    if name.startswith("conv_"):
        return Branch(c, O.ReLUConvBN(c, c, _kernel(name)))
    if name in ("avg_pool_3x3", "max_pool_3x3"):
        return Branch(c, O.Pool(name[:3]))
    if name in O.OPS:  # an op added by enas.register_op: its module runs at stride 1 after the 1x1 input
        return Branch(c, O.build(name, c, False))
    raise ValueError(f"macro space: unknown op {name!r}")


class SkipCombine(nn.Module):
    """ReLU -> 1x1 conv -> BN over ``[skip sources..., op output]``; the 1x1 weight is held as per-source blocks."""

    def __init__(self, c: int, sources: list[int]):
        super().__init__()
        self.blocks = nn.ParameterDict({str(j): O.conv_weight(c, c, 1) for j in sources})
        self.blocks["op"] = O.conv_weight(c, c, 1)
        self.bn = O.bn(c)

    def forward(self, out: torch.Tensor, skips: list[tuple[int, torch.Tensor]]) -> torch.Tensor:
        if not skips:
            return self.bn(F.conv2d(F.relu(out), self.blocks["op"]))
        x = torch.cat([t for _, t in skips] + [out], dim=1)  # [N, (k+1)C, H, W]
        w = torch.cat([self.blocks[str(j)] for j, _ in skips] + [self.blocks["op"]], dim=1)  # [C, (k+1)C, 1, 1]
        return self.bn(F.conv2d(F.relu(x), w))


class MacroLayer(nn.Module):
    def __init__(self, index: int, c: int, op_names: tuple[str, ...], sources: list[int]):
        super().__init__()
        self.index = index
        self.ops = nn.ModuleDict({name: build_branch(name, c) for name in op_names})
        self.combine = SkipCombine(c, sources) if index > 0 else None

    def forward(self, x: torch.Tensor, op: str, skips: list[tuple[int, torch.Tensor]]) -> torch.Tensor:
        out = self.ops[op](x)
        if self.combine is None:
            return out
        return self.combine(out, skips)


def reduced_nodes(arch: MacroArch | None, num_layers: int) -> dict[int, list[int]]:
    """For each pool point p, the nodes that must be reduced there (all of 0..p+1 for the supernet).

    Node j is needed after p if it is the next layer's input (j == p + 1) or a later layer skips from it.
    """
    out = {}
    for p in pool_layers(num_layers):
        if arch is None:
            out[p] = list(range(p + 2))
        else:
            out[p] = [j for j in range(p + 2)
                      if j == p + 1 or any(arch.skips[l][j] for l in range(p + 1, num_layers))]
    return out


class MacroNet(nn.Module):
    """Supernet when ``arch`` is None, fixed model of ``arch`` otherwise. ``forward(x, arch)`` -> (logits, None)."""

    def __init__(self, space: MacroSpace, *, channels: int, num_classes: int, in_channels: int = 3,
                 arch: MacroArch | None = None, keep_prob: float = 1.0, double_channels: bool | None = None):
        super().__init__()
        errors = space.check()
        if arch is not None:
            errors += validate(arch, space)
        if errors:
            raise ArchError(errors)
        self.space, self.arch = space, arch
        self.double_channels = (arch is not None) if double_channels is None else bool(double_channels)
        n = space.num_layers
        self.pools = pool_layers(n)
        self._reduced = reduced_nodes(arch, n)
        c = channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1, bias=False), O.bn(c))
        self.layers = nn.ModuleList()
        self.reduce = nn.ModuleDict()
        for l in range(n):
            names = space.ops if arch is None else (arch.ops[l],)
            sources = list(range(l)) if arch is None else arch.sources(l)
            self.layers.append(MacroLayer(l, c, names, sources))
            if l in self.pools:
                c_out = 2 * c if self.double_channels else c
                self.reduce[str(l)] = nn.ModuleDict(
                    {str(j): O.FactorizedReduce(c, c_out) for j in self._reduced[l]})
                c = c_out
        self.dropout = nn.Dropout(1.0 - keep_prob)
        self.classifier = nn.Linear(c, num_classes, bias=False)

    def _resolve(self, arch: MacroArch | None) -> tuple[MacroArch, dict[int, list[int]]]:
        if arch is None:
            if self.arch is None:
                raise ValueError("MacroNet is a supernet: forward(x, arch) needs an architecture")
            return self.arch, self._reduced
        if self.arch is not None:
            if arch != self.arch:
                raise ValueError("this fixed MacroNet holds only the ops of its own architecture; "
                                 "call forward(x) or forward(x, model.arch)")
            return arch, self._reduced
        errors = validate(arch, self.space)
        if errors:
            raise ArchError(errors)
        return arch, reduced_nodes(arch, self.space.num_layers)

    def forward(self, x: torch.Tensor, arch: MacroArch | None = None,
                drop_path_prob: float = 0.0) -> tuple[torch.Tensor, None]:
        """Logits of ``arch`` (the model's own for a fixed model). ``drop_path_prob`` is accepted and ignored:
        the macro network has neither drop-path nor an auxiliary head (as in the reference)."""
        arch, reduced = self._resolve(arch)
        nodes: list[torch.Tensor | None] = [self.stem(x)]  # nodes[j]: 0 = stem, j = output of layer j - 1
        for l, layer in enumerate(self.layers):
            skips = [(j, nodes[j]) for j in arch.sources(l)]
            nodes.append(layer(nodes[l], arch.ops[l], skips))
            if l in self.pools:
                red = self.reduce[str(l)]
                keep = set(reduced[l])
                nodes = [red[str(j)](t) if j in keep else None for j, t in enumerate(nodes)]
        out = F.adaptive_avg_pool2d(F.relu(nodes[-1]), 1).flatten(1)
        return self.classifier(self.dropout(out)), None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
