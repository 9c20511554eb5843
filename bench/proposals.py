"""Measure the proposed changes to the hot loop against the current code, side by side on the same batches.

* ``search.shared_step`` (current) versus ``fast_step.FastStep.step`` (proposed: no per-step ``model.train()``
  or ``model.parameters()`` walk, no host read of the non-finite check, fused SGD that skips on the device,
  no host-to-device copies per step), for the supernet of each space. At a tiny batch the step is
  dominated by host work, which is what the host must keep ahead of on a GPU; at a larger batch by compute.
* The pieces alone: one ``model.train()`` and one ``list(model.parameters())`` on each supernet.

    python bench/proposals.py [--batches 2,32]
"""

from __future__ import annotations

import argparse
import sys

import common as B

PRESETS = {"micro": "micro-search", "macro": "macro-search", "rnn": "ptb-search"}


def bench_space(space: str, batch: int, args) -> dict:
    from fast_step import FastStep
    cfg = B.load_cfg(PRESETS[space], [f"run.device={args.device}", f"shared.batch_size={batch}"])
    run = B.make_run(cfg, n_train=max(2000, 20 * batch), n_valid=500, corpus_tokens=50_000)
    fast = FastStep(run)
    archs = B.random_archs(run, args.archs, args.seed)
    rows = []
    for arch in archs:
        t = B.summarize(B.paired(run, {"current": lambda a=arch: B.shared_step(run, a),
                                       "proposed": lambda a=arch: fast.step(a)},
                                 repeats=args.repeats, warmup=1))
        rows.append({"current": t["current"], "proposed": t["proposed"], "gain": t["current"] / t["proposed"],
                     "saved_s": t["current"] - t["proposed"]})
    m = run.model
    pieces = B.summarize(B.interleave({"train()": lambda: m.train(), "parameters()": lambda: list(m.parameters())},
                                      repeats=50, warmup=2))
    return {"space": space, "batch": batch, "rows": rows,
            "current": B.median(r["current"] for r in rows), "proposed": B.median(r["proposed"] for r in rows),
            "gain_median": B.median(r["gain"] for r in rows), "saved_median": B.median(r["saved_s"] for r in rows),
            "t_train_call": pieces["train()"], "t_parameters_call": pieces["parameters()"],
            "modules": sum(1 for _ in m.modules()), "params": sum(1 for _ in m.parameters())}


def host_bound(space: str, args) -> dict:
    """Batch 2 on 8x8 images (rnn: vocabulary 1,000): almost no arithmetic, so the step time is the host's
    work per step (Python, dispatch, one kernel call per op), which is what bounds a GPU step when the GPU
    is faster than the host. Supernet and fixed model, current and proposed step, all paired."""
    from fast_step import FastStep
    ov = [f"run.device={args.device}", "shared.batch_size=2", "data.pad=1"]
    if space == "rnn":
        ov.append("data.vocab_size=1000")
    cfg = B.load_cfg(PRESETS[space], ov)
    run = B.make_run(cfg, n_train=500, n_valid=100, corpus_tokens=20_000, image_size=8)
    rows = []
    for arch in B.random_archs(run, args.archs, args.seed):
        fx = B.fixed_twin(run, arch)
        fs, ff = FastStep(run), FastStep(fx)
        t = B.summarize(B.paired(run, {
            "supernet current": lambda a=arch: B.shared_step(run, a),
            "supernet proposed": lambda a=arch, f=fs: f.step(a),
            "fixed current": lambda a=arch, x=fx: B.shared_step(x, a),
            "fixed proposed": lambda a=arch, f=ff: f.step(a)}, repeats=args.host_repeats, warmup=2))
        rows.append(t)
    med = {k: B.median(r[k] for r in rows) for k in rows[0]}
    ratio = lambda a, b: B.median(r[a] / r[b] for r in rows)  # noqa: E731
    return {"space": space, "rows": rows, **med,
            "ratio_current": ratio("supernet current", "fixed current"),
            "ratio_proposed": ratio("supernet proposed", "fixed proposed"),
            "gain_supernet": ratio("supernet current", "supernet proposed"),
            "gain_fixed": ratio("fixed current", "fixed proposed")}


def run(args) -> dict:
    B.setup_threads(args.threads)
    out = {"machine": B.machine_info(args.device), "results": [], "host_bound": []}
    for space in args.spaces.split(","):
        for b in (int(x) for x in args.batches.split(",")):
            out["results"].append(bench_space(space, b, args))
        if not args.no_host_bound:
            out["host_bound"].append(host_bound(space, args))
    return out


def table(r: dict) -> str:
    lines = ["| space | batch | current step | proposed step | current / proposed (median over archs) "
             "| saved per step | `model.train()` | `list(model.parameters())` | modules / params |",
             "|---|---|---|---|---|---|---|---|---|"]
    for x in r["results"]:
        lines.append(f"| {x['space']} | {x['batch']} | {B.fmt_s(x['current'])} | {B.fmt_s(x['proposed'])} "
                     f"| {x['gain_median']:.3f} | {B.fmt_s(x['saved_median'])} | {B.fmt_s(x['t_train_call'])} "
                     f"| {B.fmt_s(x['t_parameters_call'])} | {x['modules']} / {x['params']} |")
    if r.get("host_bound"):
        lines += ["", "Host-bound steps (batch 2, 8x8 images; rnn: vocabulary 1,000), medians over architectures:", "",
                  "| space | supernet current | supernet proposed | fixed current | fixed proposed "
                  "| supernet / fixed, current | supernet / fixed, proposed | proposed gain, supernet |",
                  "|---|---|---|---|---|---|---|---|"]
        for x in r["host_bound"]:
            lines.append(f"| {x['space']} | {B.fmt_s(x['supernet current'])} | {B.fmt_s(x['supernet proposed'])} "
                         f"| {B.fmt_s(x['fixed current'])} | {B.fmt_s(x['fixed proposed'])} "
                         f"| {x['ratio_current']:.3f} | {x['ratio_proposed']:.3f} | {x['gain_supernet']:.3f}x |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    B.common_args(p)
    p.add_argument("--spaces", default="micro,macro,rnn")
    p.add_argument("--batches", default="2,32")
    p.add_argument("--archs", type=int, default=3)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--host-repeats", type=int, default=10)
    p.add_argument("--no-host-bound", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    return B.cli(parser, run, table, argv)


if __name__ == "__main__":
    sys.exit(main())
