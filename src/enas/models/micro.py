"""Micro-space network: the supernet (every op of every node, shared) and the fixed model (chosen ops only).

One class serves both, built from the same cell code with identical parameter names, so a fixed model loads a
plain subset of a supernet's ``state_dict`` and computes the same function for its architecture.

Layout (as in the reference): ``num_layers`` normal cells plus two reduction cells placed at indices
``pd`` and ``2*pd + 1`` with ``pd = num_layers // 3``; channels double at each reduction. Reduction cells run
the ops that read a cell input at stride 2 (identity becomes a factorized reduction) and ops on inner nodes
at stride 1. A cell's output is ReLU -> 1x1 conv -> BN over the concatenated loose ends; the 1x1 weight is
stored as one block per node, so the supernet selects the blocks of the sampled loose ends.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops as O
from ..spaces.micro import MicroArch, MicroNode, MicroSpace, loose_ends


def reduction_indices(num_layers: int) -> tuple[int, int]:
    pd = num_layers // 3
    return pd, 2 * pd + 1


def drop_path(x: torch.Tensor, drop_prob: float | torch.Tensor) -> torch.Tensor:
    """Zero whole samples with probability ``drop_prob`` and rescale the rest (training only). ``drop_prob``
    may be a 0-dim tensor (what ``enas train`` passes to a compiled model, so that its graph does not depend
    on a value that changes every step)."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


class Cell(nn.Module):
    def __init__(self, space: MicroSpace, c_pp: int, c_p: int, c: int, reduction: bool, prev_reduction: bool,
                 nodes: tuple[MicroNode, ...] | None):
        super().__init__()
        self.reduction = reduction
        self.num_nodes = space.num_nodes
        if prev_reduction:
            self.pre0: nn.Module = O.FactorizedReduce(c_pp, c)
        elif c_pp != c:
            self.pre0 = O.ReLUConvBN(c_pp, c, 1)
        else:
            self.pre0 = nn.Identity()
        self.pre1: nn.Module = O.ReLUConvBN(c_p, c, 1) if c_p != c else nn.Identity()
        self.nodes = nn.ModuleList()
        for i in range(space.num_nodes):
            slots = nn.ModuleDict()
            for slot in ("x", "y"):
                if nodes is None:  # supernet: every op; identity may read a cell input in a reduction cell
                    names = space.ops
                    reducible = reduction
                else:
                    node = nodes[i]
                    names = (node.x_op,) if slot == "x" else (node.y_op,)
                    reducible = reduction and (node.x if slot == "x" else node.y) < 2
                slots[slot] = nn.ModuleDict({n: O.build(n, c, reducible) for n in names})
            self.nodes.append(slots)
        if nodes is None:
            blocks = range(2, space.num_nodes + 2)
        else:
            blocks = loose_ends(nodes)
        self.combine = nn.ParameterDict({str(j): O.conv_weight(c, c, 1) for j in blocks})
        self.combine_bn = O.bn(c)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, nodes: tuple[MicroNode, ...],
                drop_prob: float | torch.Tensor = 0.0) -> torch.Tensor:
        states = [self.pre0(s0), self.pre1(s1)]
        for i, node in enumerate(nodes):
            out = None
            for slot, inp, op in (("x", node.x, node.x_op), ("y", node.y, node.y_op)):
                stride = 2 if self.reduction and inp < 2 else 1
                h = self.nodes[i][slot][op](states[inp], stride)
                if self.training and op != "identity" and (isinstance(drop_prob, torch.Tensor) or drop_prob > 0.0):
                    h = drop_path(h, drop_prob)
                out = h if out is None else out + h
            states.append(out)
        ends = loose_ends(nodes)
        x = torch.cat([states[j] for j in ends], dim=1) if len(ends) > 1 else states[ends[0]]
        w = torch.cat([self.combine[str(j)] for j in ends], dim=1) if len(ends) > 1 else self.combine[str(ends[0])]
        return self.combine_bn(F.conv2d(F.relu(x), w))


class AuxHead(nn.Module):
    """Auxiliary classifier: ReLU -> 5x5/3 avg pool -> 1x1 conv 128 -> 2x2 conv 768 -> linear."""

    def __init__(self, c: int, num_classes: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c, 128, 1, bias=False)
        self.bn1 = O.bn(128)
        self.conv2 = nn.Conv2d(128, 768, 2, bias=False)
        self.bn2 = O.bn(768)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        if x.shape[-1] >= 5:
            x = F.avg_pool2d(x, 5, stride=3)
        x = F.adaptive_avg_pool2d(x, 2)
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.flatten(1))


class MicroNet(nn.Module):
    """Supernet when ``arch`` is None, fixed model of ``arch`` otherwise. ``forward(x, arch)`` -> (logits, aux)."""

    def __init__(self, space: MicroSpace, *, channels: int, num_layers: int, num_classes: int,
                 in_channels: int = 3, arch: MicroArch | None = None, aux: bool = True,
                 keep_prob: float = 1.0, stem_multiplier: int = 3):
        super().__init__()
        self.space, self.arch = space, arch
        self.reductions = reduction_indices(num_layers)
        self.num_cells = num_layers + 2
        c_stem = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), O.bn(c_stem))
        c_pp, c_p, c = c_stem, c_stem, channels
        self.cells = nn.ModuleList()
        prev_reduction = False
        self.aux_index = self.reductions[1] + 1 if aux else -1
        if self.aux_index >= self.num_cells:
            self.aux_index = self.num_cells - 1 if aux else -1
        self.aux_head: AuxHead | None = None
        for k in range(self.num_cells):
            reduction = k in self.reductions
            if reduction:
                c *= 2
            nodes = None if arch is None else arch.cell("reduce" if reduction else "normal")
            self.cells.append(Cell(space, c_pp, c_p, c, reduction, prev_reduction, nodes))
            prev_reduction = reduction
            c_pp, c_p = c_p, c
            if k == self.aux_index:
                self.aux_head = AuxHead(c, num_classes)
        self.dropout = nn.Dropout(1.0 - keep_prob)
        self.classifier = nn.Linear(c_p, num_classes, bias=False)

    def forward(self, x: torch.Tensor, arch: MicroArch | None = None,
                drop_path_prob: float | torch.Tensor = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
        arch = arch if arch is not None else self.arch
        if arch is None:
            raise ValueError("MicroNet is a supernet: forward(x, arch) needs an architecture")
        s0 = s1 = self.stem(x)
        aux = None
        for k, cell in enumerate(self.cells):
            nodes = arch.reduce if k in self.reductions else arch.normal
            p = drop_path_prob * (k + 1) / self.num_cells
            s0, s1 = s1, cell(s0, s1, nodes, p)
            if k == self.aux_index and self.training and self.aux_head is not None:
                aux = self.aux_head(s1)
        out = F.adaptive_avg_pool2d(F.relu(s1), 1).flatten(1)
        return self.classifier(self.dropout(out)), aux


def count_parameters(model: nn.Module, *, include_aux: bool = False) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if include_aux or not n.startswith("aux_head"))
