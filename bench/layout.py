"""Contiguous versus channels-last (and fp32 versus bf16) per space on this machine, for ``run.channels_last=auto``
(issue #16).

For each configuration two search runs are built on synthetic data, one per layout, and their shared steps
(one architecture sampled per step, the same architecture for both layouts in a round) are interleaved A, B,
A, B, ... in one process; a fixed-model training step of the same architecture (``final``) is timed the same way.
The ratio channels-last / contiguous below 1 means channels-last wins.

    python bench/layout.py [--configs default,micro-small,micro-paper,macro,nb201,final] [--rounds 6]
    python bench/layout.py --bf16                 # also bf16 autocast (contiguous), where the CPU has it
"""

from __future__ import annotations

import argparse
import sys

import common as B

# name -> (preset, overrides, image size); the shapes of the search presets, at a CPU-sized batch where noted
CONFIGS = {
    "default": ("default", [], 8),
    "micro-small": ("micro-search", ["space_cfg.num_nodes=5", "net.num_layers=3", "net.channels=8",
                                     "shared.batch_size=32", "net.aux_weight=0", "net.keep_prob=1.0"], 32),
    "micro-paper": ("micro-search", ["space_cfg.num_nodes=5", "net.aux_weight=0", "net.keep_prob=1.0"], 32),
    "macro": ("macro-search", ["shared.batch_size=32"], 32),
    "nb201": ("nb201-search", [], 32),
    "nb201-cpu": ("nb201-cpu", [], 16),
}


def _runs(name: str, variants: dict[str, list[str]]):
    preset, over, size = CONFIGS[name]
    out = {}
    for v, extra in variants.items():
        cfg = B.load_cfg(preset, [*over, "run.device=cpu", *extra])
        out[v] = B.make_run(cfg, n_train=cfg.shared.batch_size * 4, n_valid=cfg.shared.batch_size,
                            image_size=size)
    return out


def time_config(name: str, rounds: int, bf16: bool, final: bool) -> dict[str, float]:
    variants = {"contiguous": ["run.channels_last=off", "run.bf16=off"],
                "channels_last": ["run.channels_last=on", "run.bf16=off"]}
    if bf16:
        variants["bf16"] = ["run.channels_last=off", "run.bf16=on"]
    runs = _runs(name, variants)
    first = next(iter(runs.values()))
    archs = B.random_archs(first, rounds + 2, seed=1)
    if final:
        runs = {v: B.fixed_twin(r, archs[0]) for v, r in runs.items()}
        archs = [archs[0]] * len(archs)
    calls = {v: 0 for v in runs}

    def step(v):  # the k-th call of every variant runs architecture k: the same one for all layouts in a round
        def go():
            B.shared_step(runs[v], archs[calls[v] % len(archs)])
            calls[v] += 1
        return go
    times = B.interleave({v: step(v) for v in runs}, repeats=rounds, warmup=1)
    return B.summarize(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="default,micro-small,micro-paper,macro,nb201,nb201-cpu,final")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    B.setup_threads(a.threads)
    rows = []
    for name in [c for c in a.configs.split(",") if c]:
        final = name == "final"
        base = "micro-paper" if final else name
        if base not in CONFIGS:
            sys.exit(f"unknown config {name}")
        med = time_config(base, a.rounds, a.bf16, final)
        label = "final (fixed micro, paper-micro shape)" if final else f"{name} ({CONFIGS[name][0]})"
        cells = [label, B.fmt_s(med["contiguous"]), B.fmt_s(med["channels_last"]),
                 f"{med['channels_last'] / med['contiguous']:.2f}"]
        if a.bf16:
            cells.append(f"{med['bf16'] / med['contiguous']:.2f}")
        rows.append("| " + " | ".join(cells) + " |")
        print(rows[-1], file=sys.stderr)
    head = "| config | contiguous | channels-last | channels-last / contiguous |" + (" bf16 / fp32 |" if a.bf16 else "")
    B.emit_table([f"Shared step (supernet, sampling excluded) median of {a.rounds} interleaved rounds, "
                  f"{a.threads} threads", "", head, "|---|---|---|---|" + ("---|" if a.bf16 else ""), *rows], a.out)


if __name__ == "__main__":
    main()
