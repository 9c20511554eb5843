"""Micro-space network: the supernet (every op of every node, shared) and the fixed model (chosen ops only).

One class serves both, built from the same cell code with identical parameter names, so a fixed model loads a
plain subset of a supernet's ``state_dict`` and computes the same function for its architecture.

Layout (as in the reference): ``num_layers`` normal cells plus two reduction cells placed at indices
``pd`` and ``2*pd + 1`` with ``pd = num_layers // 3``; channels double at each reduction. Reduction cells run
the ops that read a cell input at stride 2 (identity becomes a factorized reduction) and ops on inner nodes
at stride 1. A cell's inputs are ``s0`` (the output of the cell two back) and ``s1`` (the previous cell's);
the first cells read the stem.

Two options shape a cell (``NetConfig.cell_output`` and ``NetConfig.cell_residual``):

``cell_output="combine"`` (default; one design for search and final training)
    The cell output is ReLU -> 1x1 conv -> BN over the concatenated loose ends, back to ``C`` channels. The 1x1
    weight is stored as one block per node (``cells.k.combine.<j>``), so the supernet selects the blocks of the
    sampled loose ends. The next cell reads it through ``pre0``/``pre1`` (identity, or ReLU-1x1-BN where the
    channels change, or a factorized reduction after a reduction cell).
``cell_output="concat"`` (the reference's final network, ``_fixed_layer``/``_fixed_combine``)
    The cell output is the plain concatenation of its loose ends (``n_ends * C`` channels, no projection). The
    next cell calibrates its inputs to ``C``: ``pre0`` is ReLU-1x1-BN (a factorized reduction when ``s0`` has
    twice the resolution), ``pre1`` is ReLU-1x1-BN followed by the reference's "layer base" ReLU-1x1-BN
    (``base``), and the aux head's first 1x1 conv and the classifier read the concatenation too. Every weight
    that reads a concatenation is stored as one block per possible loose end of the cell that produced it
    (``BlockWeight``), so the supernet (all nodes possible) selects the sampled blocks and still equals the
    fixed model. As in the reference, the loose ends include an unused cell input (in a reduction cell, after a
    factorized reduction: ``end_reduce``), and a fixed model gets no calibration 1x1 where the concatenation
    already has ``C`` channels (the supernet holds that weight and passes through for such architectures).
    ``tests/test_reference_count.py`` checks the count against a tally of the reference's own variable shapes,
    for the published cell and for random cells.
    The published cell at 36 channels and 15 + 2 cells has 3,894,372 parameters without the aux head and
    4,389,230 with it (the paper reports 4.6M; "combine" gives 3,190,860 without the aux head).

``cell_residual=True`` (only with ``combine``)
    Every cell adds an identity path from its previous-cell input ``s1`` to its output, after the combine BN:
    a normal cell adds ``pre1(s1)`` (its own preprocessed input, already of the output's shape), a reduction
    cell adds ``residual(s1)``, a factorized reduction of ``s1`` (``cells.k.residual``). Drop-path never drops
    this path. It keeps sampled architectures from interfering with each other in the supernet (issue #14;
    ``bench/trainability_quick.py``: supernet training accuracy after 400 steps on digits 0.21 -> 0.64, random
    architectures with shared weights 0.17 -> 0.78; adding it *before* the combine BN instead gave only 0.25).
    Off, nothing is added (the reference has no such path).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .. import ops as O
from ..spaces.micro import MicroArch, MicroNode, MicroSpace, loose_ends, unused_states

CELL_OUTPUTS = ("combine", "concat")


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


class BlockWeight(nn.ParameterDict):
    """A weight whose input-channel axis (dim 1) is stored as one block per loose end ``j`` of the cell whose
    (concatenated) output it reads, keyed ``"<j>"``. ``select(ends)`` concatenates the blocks of ``ends``."""

    def __init__(self, make: Callable[[], nn.Parameter], ends: Sequence[int]):
        super().__init__({str(j): make() for j in ends})

    def select(self, ends: Sequence[int]) -> torch.Tensor:
        if len(ends) == 1:
            return self[str(ends[0])]
        return torch.cat([self[str(j)] for j in ends], dim=1)


class LooseEndConv(nn.Module):
    """ReLU -> 1x1 conv -> BN of a concatenated cell output; the weight is a ``BlockWeight``."""

    def __init__(self, c_block: int, ends: Sequence[int], c_out: int):
        super().__init__()
        self.weight = BlockWeight(lambda: O.conv_weight(c_out, c_block, 1), ends)
        self.bn = O.bn(c_out)

    def forward(self, x: torch.Tensor, ends: Sequence[int]) -> torch.Tensor:
        if x.shape[1] == self.bn.num_features:  # already c_out channels: the reference calibrates nothing
            return x
        return self.bn(F.conv2d(F.relu(x), self.weight.select(ends)))


class LooseEndReduce(nn.Module):
    """``ops.FactorizedReduce`` of a concatenated cell output (two offset 1x1 stride-2 convs, concat, BN);
    both weights are ``BlockWeight``s."""

    def __init__(self, c_block: int, ends: Sequence[int], c_out: int):
        super().__init__()
        self.w1 = BlockWeight(lambda: O.conv_weight(c_out // 2, c_block, 1), ends)
        self.w2 = BlockWeight(lambda: O.conv_weight(c_out - c_out // 2, c_block, 1), ends)
        self.bn = O.bn(c_out)

    def forward(self, x: torch.Tensor, ends: Sequence[int]) -> torch.Tensor:
        x = F.relu(x)
        a = F.conv2d(x, self.w1.select(ends), stride=2)
        b = F.conv2d(F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1)), self.w2.select(ends), stride=2)
        return self.bn(torch.cat([a, b], dim=1))


class PassThrough(nn.Module):
    """A calibration with nothing to do: the input already has the cell's channels (fixed ``concat`` models)."""

    def forward(self, x: torch.Tensor, ends: Sequence[int] | None = None) -> torch.Tensor:
        return x


def check_options(cell_residual: bool, cell_output: str) -> None:
    if cell_output not in CELL_OUTPUTS:
        raise ValueError(f"cell_output: expected one of {', '.join(CELL_OUTPUTS)}, got {cell_output!r}")
    if cell_residual and cell_output != "combine":
        raise ValueError("cell_residual=True needs cell_output='combine': a concatenated cell output has as many "
                         "channels as the architecture has loose ends, so no identity path of a fixed shape can be "
                         "added to it (use cell_residual=False with concat)")


def _calibration(c_in: int, ends: Sequence[int] | None, c: int, reduce: bool, exact: bool = False) -> nn.Module:
    """What brings a cell input to ``c`` channels (and, with ``reduce``, to half its resolution). ``ends`` are
    the possible loose ends of the cell that produced it (None: a plain tensor of ``c_in`` channels); ``exact``:
    they are its actual loose ends (a fixed model), so a concatenation that already has ``c`` channels gets no
    weights, as in the reference's ``_maybe_calibrate_size`` (a supernet holds them and passes through)."""
    if ends is not None:
        if reduce:
            return LooseEndReduce(c_in, ends, c)
        return PassThrough() if exact and len(ends) * c_in == c else LooseEndConv(c_in, ends, c)
    if reduce:
        return O.FactorizedReduce(c_in, c)
    if c_in != c:
        return O.ReLUConvBN(c_in, c, 1)
    return nn.Identity()


class Cell(nn.Module):
    """One cell. ``c_pp``/``c_p``: channels of ``s0``/``s1`` (per loose-end block when ``ends0``/``ends1``
    are given, i.e. when the input is a ``concat`` cell output; ``ends*`` are the loose ends it may have)."""

    def __init__(self, space: MicroSpace, c_pp: int, c_p: int, c: int, reduction: bool, prev_reduction: bool,
                 nodes: tuple[MicroNode, ...] | None, *, ends0: Sequence[int] | None = None,
                 ends1: Sequence[int] | None = None, residual: bool = False, output: str = "combine"):
        super().__init__()
        check_options(residual, output)
        self.reduction = reduction
        self.num_nodes = space.num_nodes
        self.concat = output == "concat"
        self.residual_on = residual
        exact = nodes is not None
        self.pre0 = _calibration(c_pp, ends0, c, prev_reduction, exact)
        self.pre1 = _calibration(c_p, ends1, c, False, exact)
        if self.concat:
            self.base = O.ReLUConvBN(c, c, 1)  # the reference's "layer_base" on the calibrated s1
            if reduction:  # an unused cell input joins the output at half its resolution (``_fixed_combine``)
                inputs = (0, 1) if nodes is None else [j for j in unused_states(nodes) if j < 2]
                self.end_reduce = nn.ModuleDict({str(j): O.FactorizedReduce(c, c) for j in inputs})
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
        if not self.concat:
            blocks = range(2, space.num_nodes + 2) if nodes is None else loose_ends(nodes)
            self.combine = BlockWeight(lambda: O.conv_weight(c, c, 1), blocks)
            self.combine_bn = O.bn(c)
            if residual and reduction:
                self.residual = O.FactorizedReduce(c_p, c)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, nodes: tuple[MicroNode, ...],
                drop_prob: float | torch.Tensor = 0.0, ends0: Sequence[int] | None = None,
                ends1: Sequence[int] | None = None) -> torch.Tensor:
        h0 = self.pre0(s0) if ends0 is None else self.pre0(s0, ends0)
        h1 = self.pre1(s1) if ends1 is None else self.pre1(s1, ends1)
        if self.concat:
            h1 = self.base(h1)
        states = [h0, h1]
        for i, node in enumerate(nodes):
            out = None
            for slot, inp, op in (("x", node.x, node.x_op), ("y", node.y, node.y_op)):
                stride = 2 if self.reduction and inp < 2 else 1
                h = self.nodes[i][slot][op](states[inp], stride)
                if self.training and op != "identity" and (isinstance(drop_prob, torch.Tensor) or drop_prob > 0.0):
                    h = drop_path(h, drop_prob)
                out = h if out is None else out + h
            states.append(out)
        if self.concat:  # the reference's loose ends: every unused state, cell inputs included
            outs = [self.end_reduce[str(j)](states[j]) if self.reduction and j < 2 else states[j]
                    for j in unused_states(nodes)]
            return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]
        ends = loose_ends(nodes)
        x = torch.cat([states[j] for j in ends], dim=1) if len(ends) > 1 else states[ends[0]]
        out = self.combine_bn(F.conv2d(F.relu(x), self.combine.select(ends)))
        if self.residual_on:
            out = out + (self.residual(s1) if self.reduction else h1)
        return out


class AuxHead(nn.Module):
    """Auxiliary classifier: ReLU -> 5x5/3 avg pool -> 1x1 conv 128 -> 2x2 conv 768 -> linear. With ``ends``
    (it reads a ``concat`` cell output) the 1x1 weight is a ``BlockWeight`` of ``c`` channels per block."""

    def __init__(self, c: int, num_classes: int, ends: Sequence[int] | None = None):
        super().__init__()
        if ends is None:
            self.conv1: nn.Module = nn.Conv2d(c, 128, 1, bias=False)
        else:
            self.conv1 = BlockWeight(lambda: O.conv_weight(128, c, 1), ends)
        self.bn1 = O.bn(128)
        self.conv2 = nn.Conv2d(128, 768, 2, bias=False)
        self.bn2 = O.bn(768)
        self.fc = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor, ends: Sequence[int] | None = None) -> torch.Tensor:
        x = F.relu(x)
        if x.shape[-1] >= 5:
            x = F.avg_pool2d(x, 5, stride=3)
        x = F.adaptive_avg_pool2d(x, 2)
        x = self.conv1(x) if ends is None else F.conv2d(x, self.conv1.select(ends))
        x = F.relu(self.bn1(x))
        x = F.relu(self.bn2(self.conv2(x)))
        return self.fc(x.flatten(1))


class MicroNet(nn.Module):
    """Supernet when ``arch`` is None, fixed model of ``arch`` otherwise. ``forward(x, arch)`` -> (logits, aux).

    ``cell_output`` ("combine" or "concat") and ``cell_residual``: see the module docstring.
    """

    def __init__(self, space: MicroSpace, *, channels: int, num_layers: int, num_classes: int,
                 in_channels: int = 3, arch: MicroArch | None = None, aux: bool = True,
                 keep_prob: float = 1.0, stem_multiplier: int = 3, cell_residual: bool = False,
                 cell_output: str = "combine"):
        super().__init__()
        check_options(cell_residual, cell_output)
        self.space, self.arch = space, arch
        self.cell_output, self.cell_residual = cell_output, cell_residual
        concat = cell_output == "concat"
        self.reductions = reduction_indices(num_layers)
        self.num_cells = num_layers + 2
        c_stem = stem_multiplier * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_stem, 3, padding=1, bias=False), O.bn(c_stem))
        c_pp, c_p, c = c_stem, c_stem, channels
        e_pp = e_p = None  # possible loose ends of the cells that produced s0 / s1 (None: the stem, or combine)
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
            self.cells.append(Cell(space, c_pp, c_p, c, reduction, prev_reduction, nodes, ends0=e_pp,
                                   ends1=e_p, residual=cell_residual, output=cell_output))
            prev_reduction = reduction
            ends = None
            if concat:
                ends = tuple(range(space.num_nodes + 2)) if nodes is None else tuple(unused_states(nodes))
            c_pp, c_p = c_p, c
            e_pp, e_p = e_p, ends
            if k == self.aux_index:
                self.aux_head = AuxHead(c, num_classes, ends)
        self.dropout = nn.Dropout(1.0 - keep_prob)
        if concat:
            self.classifier: nn.Module = BlockWeight(lambda: nn.Parameter(_linear_weight(num_classes, c_p)), e_p)
        else:
            self.classifier = nn.Linear(c_p, num_classes, bias=False)

    def forward(self, x: torch.Tensor, arch: MicroArch | None = None,
                drop_path_prob: float | torch.Tensor = 0.0) -> tuple[torch.Tensor, torch.Tensor | None]:
        arch = arch if arch is not None else self.arch
        if arch is None:
            raise ValueError("MicroNet is a supernet: forward(x, arch) needs an architecture")
        concat = self.cell_output == "concat"
        s0 = s1 = self.stem(x)
        e0 = e1 = None  # the loose ends s0 / s1 concatenate (concat only; None: a plain tensor)
        aux = None
        for k, cell in enumerate(self.cells):
            nodes = arch.reduce if k in self.reductions else arch.normal
            p = drop_path_prob * (k + 1) / self.num_cells
            s0, s1 = s1, cell(s0, s1, nodes, p, e0, e1)
            e0, e1 = e1, (unused_states(nodes) if concat else None)
            if k == self.aux_index and self.training and self.aux_head is not None:
                aux = self.aux_head(s1, e1)
        out = self.dropout(F.adaptive_avg_pool2d(F.relu(s1), 1).flatten(1))
        if concat:
            return F.linear(out, self.classifier.select(e1)), aux
        return self.classifier(out), aux


def _linear_weight(c_out: int, c_in: int) -> torch.Tensor:
    """``nn.Linear``'s default initialisation (uniform in +-1/sqrt(fan_in)) for one classifier block."""
    bound = 1.0 / c_in ** 0.5
    return torch.empty(c_out, c_in).uniform_(-bound, bound)


def count_parameters(model: nn.Module, *, include_aux: bool = False) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if include_aux or not n.startswith("aux_head"))
