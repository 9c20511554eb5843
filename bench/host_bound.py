"""Supernet step / fixed-model step when the step is host-bound, as a small network's step is on a GPU.

At batch 2 on 8x8 images (rnn: vocabulary 1,000) there is almost no arithmetic, so a step's time is the
host's work: Python, dispatch, one kernel call per op. On a GPU that is what bounds a search step when the
GPU is faster than the host, so extra host work in the supernet (walking its modules, per-step lists,
reads of the device) shows here even though a CPU-sized batch hides it. Both models are stepped with
``search.shared_step`` on the same batches (paired, generators restored), for several random architectures.
Also timed: the two module walks the step avoids, ``model.train()`` and ``list(model.parameters())``, on
each supernet.

    python bench/host_bound.py [--archs 3] [--repeats 10]
"""

from __future__ import annotations

import argparse
import sys

import common as B

PRESETS = {"micro": "micro-search", "macro": "macro-search", "rnn": "ptb-search"}


def host_bound(space: str, args) -> dict:
    ov = [f"run.device={args.device}", "shared.batch_size=2", "data.pad=1"]
    if space == "rnn":
        ov.append("data.vocab_size=1000")
    cfg = B.load_cfg(PRESETS[space], ov)
    run = B.make_run(cfg, n_train=500, n_valid=100, corpus_tokens=20_000, image_size=8)
    rows = []
    for arch in B.random_archs(run, args.archs, args.seed):
        fx = B.fixed_twin(run, arch)
        rows.append(B.summarize(B.paired(run, {"supernet": lambda a=arch: B.shared_step(run, a),
                                               "fixed": lambda a=arch, x=fx: B.shared_step(x, a)},
                                         repeats=args.repeats, warmup=2)))
    m = run.model
    walks = B.summarize(B.interleave({"train()": lambda: m.train(), "parameters()": lambda: list(m.parameters())},
                                     repeats=50, warmup=2))
    return {"space": space, "rows": rows, "supernet": B.median(r["supernet"] for r in rows),
            "fixed": B.median(r["fixed"] for r in rows),
            "ratio": B.median(r["supernet"] / r["fixed"] for r in rows),
            "t_train_call": walks["train()"], "t_parameters_call": walks["parameters()"],
            "modules": sum(1 for _ in m.modules()), "params": sum(1 for _ in m.parameters())}


def run(args) -> dict:
    B.setup_threads(args.threads)
    return {"machine": B.machine_info(args.device),
            "host_bound": [host_bound(space, args) for space in args.spaces.split(",")]}


def table(r: dict) -> str:
    lines = ["| space | supernet step | fixed step | supernet / fixed (median over archs) | one `model.train()` "
             "| one `list(model.parameters())` | supernet modules / parameters |",
             "|---|---|---|---|---|---|---|"]
    for x in r["host_bound"]:
        lines.append(f"| {x['space']} | {B.fmt_s(x['supernet'])} | {B.fmt_s(x['fixed'])} | {x['ratio']:.3f} "
                     f"| {B.fmt_s(x['t_train_call'])} | {B.fmt_s(x['t_parameters_call'])} "
                     f"| {x['modules']} / {x['params']} |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    B.common_args(p)
    p.add_argument("--spaces", default="micro,macro,rnn")
    p.add_argument("--archs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    return B.cli(parser, run, table, argv)


if __name__ == "__main__":
    sys.exit(main())
