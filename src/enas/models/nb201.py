"""NAS-Bench-201 network: the benchmark's fixed skeleton around one searched cell (supernet or fixed model).

Skeleton (Dong & Yang, ICLR 2020): a 3x3 conv stem with ``C`` channels and BN; three stages of ``N`` cells at
``C``, ``2C`` and ``4C`` channels with a residual reduction block between stages (ReLU-conv3x3/2-BN,
ReLU-conv3x3-BN, plus a 2x2 average pool and 1x1 conv shortcut); BN, ReLU, global average pool and a linear
classifier. Every cell of the network has the same architecture.

Cell: node 0 is the cell input; node ``j`` is the sum of one op per earlier node; node ``N-1`` is the output.
Ops: ``none`` (contributes nothing), ``skip_connect`` (identity), ``nor_conv_1x1`` / ``nor_conv_3x3``
(ReLU-conv-BN) and ``avg_pool_3x3`` (stride 1, padding excluded from the average). A node whose edges are
all ``none`` is a zero tensor, as in the benchmark. One class serves supernet (``arch=None``: every op of every
edge owns weights) and fixed model (only the chosen ops), with identical parameter names
(``cells.K.edges.E.OP...``), so a fixed model loads a plain subset of the supernet's ``state_dict``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops as O
from ..spaces.nb201 import NB201Arch, NB201Space, edge_list

PARAMETERISED = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}  # op -> kernel size


def _edge_op(name: str, c: int) -> nn.Module:
    if name in PARAMETERISED:
        return O.ReLUConvBN(c, c, PARAMETERISED[name])
    if name == "avg_pool_3x3":
        return O.Pool("avg")
    if name == "skip_connect":
        return nn.Identity()
    raise ValueError(f"nb201: op {name!r} has no module")


class Cell(nn.Module):
    def __init__(self, space: NB201Space, c: int, arch: NB201Arch | None):
        super().__init__()
        self.pairs = edge_list(space.num_nodes)  # (to, from) per edge, in the benchmark's order
        self.edges = nn.ModuleDict()
        for e in range(len(self.pairs)):
            names = space.ops if arch is None else (arch.edges[e],)
            self.edges[str(e)] = nn.ModuleDict({n: _edge_op(n, c) for n in names if n != "none"})

    def forward(self, x: torch.Tensor, arch: NB201Arch) -> torch.Tensor:
        nodes = [x]
        out: torch.Tensor | None = None
        for e, (to, src) in enumerate(self.pairs):
            if to == len(nodes) + 1:  # the previous node is complete
                nodes.append(out if out is not None else torch.zeros_like(x))
                out = None
            op = arch.edges[e]
            if op == "none":
                continue
            h = self.edges[str(e)][op](nodes[src])
            out = h if out is None else out + h
        return out if out is not None else torch.zeros_like(x)


class ResidualReduction(nn.Module):
    """The benchmark's block between stages: halves the resolution, doubles the channels."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv_a = O.ReLUConvBN(c_in, c_out, 3)
        self.conv_b = O.ReLUConvBN(c_out, c_out, 3)
        self.shortcut = O.conv_weight(c_out, c_in, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_b(self.conv_a(x, 2), 1)
        return y + F.conv2d(F.avg_pool2d(x, 2, 2), self.shortcut)


class NB201Net(nn.Module):
    """Supernet when ``arch`` is None, fixed model of ``arch`` otherwise. ``forward(x, arch)`` -> (logits, None)."""

    def __init__(self, space: NB201Space, *, channels: int = 16, cells_per_stage: int = 5, num_classes: int = 10,
                 in_channels: int = 3, arch: NB201Arch | None = None, keep_prob: float = 1.0):
        super().__init__()
        self.space, self.arch = space, arch
        c = channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1, bias=False), O.bn(c))
        blocks: list[nn.Module] = []
        for stage in range(3):
            if stage > 0:
                blocks.append(ResidualReduction(c, 2 * c))
                c *= 2
            blocks += [Cell(space, c, arch) for _ in range(cells_per_stage)]
        self.cells = nn.ModuleList(blocks)
        self.last_bn = O.bn(c)
        self.dropout = nn.Dropout(1.0 - keep_prob)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor, arch: NB201Arch | None = None,
                drop_path_prob: float | torch.Tensor = 0.0) -> tuple[torch.Tensor, None]:
        arch = arch if arch is not None else self.arch
        if arch is None:
            raise ValueError("NB201Net is a supernet: forward(x, arch) needs an architecture")
        x = self.stem(x)
        for block in self.cells:
            x = block(x, arch) if isinstance(block, Cell) else block(x)
        out = F.adaptive_avg_pool2d(F.relu(self.last_bn(x)), 1).flatten(1)
        return self.classifier(self.dropout(out)), None
