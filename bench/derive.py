"""A derive: ``enas.search.derive`` of N architectures (100 in the paper), each scored on one validation batch
of the ``micro-search`` supernet (batch 160, 32x32 images), with the time split into sampling + decoding and
scoring.

    python bench/derive.py [--n 100] [--device cuda]

On CPU a scoring forward takes about a second, so ``bench/run_all.py`` derives fewer architectures and
reports the measured per-architecture time and its linear projection to 100 (scoring is one independent
forward per architecture, so the cost is linear in N).
"""

from __future__ import annotations

import argparse
import sys

import common as B


def run(args) -> dict:
    import torch
    from enas import search
    B.setup_threads(args.threads)
    cfg = B.load_cfg("micro-search", [f"run.device={args.device}", "search.derive_batches=1"])
    run_ = B.make_run(cfg, n_train=4000, n_valid=2000)
    gen = run_.gens["derive"]
    # warm-up (first-call allocations, cuDNN autotuning)
    search.derive(run_, 2, gen)

    totals, samples = [], []
    for _ in range(args.repeats):
        t_total = B.timed(lambda: search.derive(run_, args.n, gen), run_.device)

        def sample():
            with torch.no_grad():
                a = search._policy(run_)(args.n, generator=gen).actions
            search.decode(run_, a)

        t_sample = B.timed(sample, run_.device)
        totals.append(t_total)
        samples.append(t_sample)
    total, samp = B.median(totals), B.median(samples)
    per_arch = (total - samp) / args.n
    return {"machine": B.machine_info(args.device), "device": args.device, "n": args.n, "batch": cfg.shared.batch_size,
            "repeats": args.repeats, "t_total": total, "t_sample": samp, "t_score_per_arch": per_arch,
            "t_projected_100": samp + 100 * per_arch}


def table(r: dict) -> str:
    note = "" if r["n"] == 100 else f" (projected from {r['n']} measured)"
    return "\n".join([
        "| measure | time |", "|---|---|",
        f"| derive of {r['n']} architectures, 1 validation batch of {r['batch']} | {B.fmt_s(r['t_total'])} |",
        f"| of which sampling + decoding {r['n']} | {B.fmt_s(r['t_sample'])} |",
        f"| scoring, per architecture | {B.fmt_s(r['t_score_per_arch'])} |",
        f"| derive of 100{note} | {B.fmt_s(r['t_projected_100'])} |",
    ])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    B.common_args(p)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--repeats", type=int, default=1)
    return p


def main(argv: list[str] | None = None) -> int:
    return B.cli(parser, run, table, argv)


if __name__ == "__main__":
    sys.exit(main())
