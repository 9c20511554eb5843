"""A search space of one's own, searched by ENAS from Python: a chain of layers, each choosing one op.

Run it (about 15 s on 2 CPU cores, no download: the embedded 8x8 digits)::

    python examples/custom_space.py [RUN_DIR]

A space is plain data and a few pure functions (what ``enas.spaces.SpaceModule`` lists: the decisions, the
controller's walk over them, validation, JSON and integer-string forms); its network is one torch module that
is the supernet without an architecture and the fixed model with one. ``enas.register_space(space, model)``
adds both; then ``cfg.space`` may name the space, and search, derive, retraining and the Python API work with it.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

import enas
from enas import api, config, ops
from enas.spaces.base import ArchError, Decision, Step, check_format_fields, parse_int_string
from enas.viz.graph import Cluster, Edge, Graph, Node


@dataclass(frozen=True)
class ChainSpace:
    num_layers: int = 3
    ops: tuple[str, ...] = ("sep_conv_3x3", "conv_3x3", "max_pool_3x3", "identity")

    def check(self) -> list[str]:
        errors = [] if self.num_layers >= 1 else [f"num_layers: must be >= 1, got {self.num_layers}"]
        errors += [f"ops: unknown op {op!r}" for op in self.ops if op not in ops.OPS]
        return errors + ([] if self.ops else ["ops: at least one op is needed"])


@dataclass(frozen=True)
class ChainArch:
    layers: tuple[str, ...]  # one op name per layer


class Chain:
    """The space's functions (an object with ``SpaceModule``'s attributes; a module works the same way)."""

    NAME = "chain"
    KIND = "image"

    def from_config(self, num_nodes: int, num_layers: int, op_names: tuple[str, ...]) -> ChainSpace:
        return ChainSpace(num_layers, tuple(op_names)) if op_names else ChainSpace(num_layers)

    def default_space(self) -> ChainSpace:
        return ChainSpace()

    def decisions(self, space: ChainSpace) -> list[Decision]:
        return [Decision(f"layer{i}.op", len(space.ops), "op") for i in range(space.num_layers)]

    def program(self, space: ChainSpace) -> list[Step]:
        return [Step("op", len(space.ops), group="op") for _ in range(space.num_layers)]

    def validate(self, arch: ChainArch, space: ChainSpace) -> list[str]:
        errors = [] if len(arch.layers) == space.num_layers else [
            f"layers: expected {space.num_layers}, got {len(arch.layers)}"]
        return errors + [f"layer{i}: unknown op {op!r}" for i, op in enumerate(arch.layers) if op not in space.ops]

    def sample_uniform(self, space: ChainSpace, rng: random.Random) -> ChainArch:
        return ChainArch(tuple(rng.choice(space.ops) for _ in range(space.num_layers)))

    def arch_from_actions(self, actions: list[int], space: ChainSpace) -> ChainArch:
        if len(actions) != space.num_layers or not all(0 <= int(a) < len(space.ops) for a in actions):
            raise ArchError(f"actions: expected {space.num_layers} op indices in [0, {len(space.ops) - 1}]")
        return ChainArch(tuple(space.ops[int(a)] for a in actions))

    def actions_from_arch(self, arch: ChainArch, space: ChainSpace) -> list[int]:
        return [space.ops.index(op) for op in arch.layers]

    def to_dict(self, arch: ChainArch) -> dict:
        return {"space": self.NAME, "format": 1, "layers": list(arch.layers)}

    def from_dict(self, d: object, space: ChainSpace) -> ChainArch:
        errors = check_format_fields(d, self.NAME)
        layers = d.get("layers") if isinstance(d, dict) else None
        if not isinstance(layers, list) or not all(isinstance(op, str) for op in layers):
            raise ArchError(errors + ["layers: expected a list of op names"])
        arch = ChainArch(tuple(layers))
        errors += self.validate(arch, space)
        if errors:
            raise ArchError(errors)
        return arch

    def from_enas_string(self, text: str, space: ChainSpace) -> ChainArch:
        return self.arch_from_actions(parse_int_string(text), space)

    def to_enas_string(self, arch: ChainArch, space: ChainSpace) -> str:
        return " ".join(map(str, self.actions_from_arch(arch, space)))

    def read_string(self, text: str, space: ChainSpace) -> ChainArch:
        return self.from_enas_string(text, space)

    def describe(self, arch: ChainArch) -> str:
        return " -> ".join(arch.layers)

    def candidate_names(self, space: ChainSpace) -> tuple[str, ...]:
        return space.ops

    def network_words(self, arch: ChainArch, num_layers: int) -> str:
        return f"{len(arch.layers)} layers"

    def space_of(self, arch: ChainArch, default: ChainSpace) -> ChainSpace:
        return ChainSpace(len(arch.layers), default.ops)

    def infer_space(self, obj: object, default: ChainSpace) -> ChainSpace:
        if isinstance(obj, dict) and isinstance(obj.get("layers"), list) and obj["layers"]:
            return ChainSpace(len(obj["layers"]), default.ops)
        return default

    def graph(self, arch: dict) -> Graph:
        """Optional: the drawing of an architecture's JSON form (``enas.viz.to_svg``, the report)."""
        layers = arch["layers"]
        nodes = [Node("in", "stem", "input")] + [Node(f"l{i}", f"layer {i}", "node") for i in range(len(layers))]
        nodes.append(Node("out", "classifier", "output"))
        ids = [n.id for n in nodes]
        edges = [Edge(a, b, layers[i] if i < len(layers) else "") for i, (a, b) in enumerate(zip(ids, ids[1:]))]
        return Graph("chain", "LR", (Cluster("chain", f"chain of {len(layers)} layers", tuple(nodes), tuple(edges)),))


class ChainNet(nn.Module):
    """Supernet (``arch=None``: every op of every layer) or fixed model (the chosen op per layer), with the same
    parameter names. ``forward(x, arch=None, drop_path_prob=0.0) -> (logits, None)``: the protocol of the
    package's networks (the second value is an auxiliary head's logits; this network has none)."""

    def __init__(self, space: ChainSpace, *, channels: int, num_classes: int, in_channels: int,
                 arch: ChainArch | None = None):
        super().__init__()
        self.arch = arch
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels))
        self.layers = nn.ModuleList(
            nn.ModuleDict({op: ops.build(op, channels, False)
                           for op in (space.ops if arch is None else (arch.layers[i],))})
            for i in range(space.num_layers))
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor, arch: ChainArch | None = None, drop_path_prob: float = 0.0):
        arch = arch if arch is not None else self.arch
        x = self.stem(x)
        for layer, op in zip(self.layers, arch.layers):
            x = x + layer[op](x, 1)  # a residual chain: every sampled path reaches the classifier
        return self.classifier(F.adaptive_avg_pool2d(F.relu(x), 1).flatten(1)), None


def build_model(space: ChainSpace, net, *, num_classes: int, in_channels: int, arch: ChainArch | None = None):
    """The network of the space from a ``NetConfig`` (``cfg.net`` for the search, ``cfg.final_net`` after)."""
    return ChainNet(space, channels=net.channels, num_classes=num_classes, in_channels=in_channels, arch=arch)


def main(out: str | None = None, epochs: int = 2) -> dict:
    enas.register_space(Chain(), build_model)
    cfg = config.load_config("tiny", overrides=["space_cfg.num_layers=3", f"shared.epochs={epochs}",
                                                "net.channels=8", "final_net.channels=8", "run.report=false"])
    cfg = config.replace(cfg, space="chain")
    result = api.search(cfg, out=out)
    print(f"best chain: {Chain().describe(api.load_arch(result['run_dir'], cfg))}")
    print(f"test accuracy {result['test_acc']:.3f} with {result['params']} parameters; run in {result['run_dir']}")
    return result


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
