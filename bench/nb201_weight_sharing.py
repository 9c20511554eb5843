"""Weight-sharing search on NAS-Bench-201, judged by the benchmark's ground truth (issues #13 and #14).

For each mode (a set of overrides on the ``nb201-cpu`` preset) and seed: run ``enas search``, then
``enas rank --ground-truth nb201`` on the trained supernet. Reports the derived cell's 200-epoch CIFAR-10
test accuracy (and rank), the share of parameter-free ops in it, the supernet's Kendall tau against the table
over ``--rank-archs`` uniformly drawn cells (batch statistics and BN-recalibrated), and the wall time.

    python bench/nb201_weight_sharing.py --data ../shared/data/cifar10-jpg --seeds 0,1,2 --json ws.json

Needs the CIFAR-10 copy and the table in ``../shared/data``. Runs one search at a time (each a few minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

PARAMETER_FREE = ("none", "skip_connect", "avg_pool_3x3")
# The reference's controller and derive (the setting that NAS-Bench-201 reports collapsing)
PAPER = ["controller.lr=0.0035", "controller.eps=0.001", "controller.tanh_constant=1.1",
         "controller.op_tanh_reduce=2.5", "controller.reward_batch_size=0", "search.shared_sampling=controller",
         "search.bn_recalibrate=0", "search.derive_batches=1"]
MODES = {
    "paper": PAPER,
    "random (weight sharing)": ["controller.kind=random"],
    "default": [],
    "default, controller-sampled shared weights": ["search.shared_sampling=controller"],
}


def run(cmd: list[str], env: dict) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return out.stdout


def one(data: str, mode: list[str], seed: int, rank_archs: int, extra: list[str], tmp: Path, env: dict) -> dict:
    d = tmp / f"run-{seed}-{abs(hash(tuple(mode))) % 10**8}"
    run([sys.executable, "-m", "enas", "search", "--preset", "nb201-cpu", "--data", data, "--out", str(d),
         "--seed", str(seed), "run.progress=false", "run.report=false", *extra, *mode], env)
    res = json.loads((d / "result.json").read_text())
    run([sys.executable, "-m", "enas", "rank", str(d), "--ground-truth", "nb201", "--archs", str(rank_archs),
         "--batches", "4", "--bn-recalibrate", "4"], env)
    rk = json.loads((d / "rank.json").read_text())
    rows = [json.loads(x) for x in (d / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in rows if r["kind"] == "epoch"][-1]
    edges = res["best_arch"]["edges"]
    return {"seed": seed, "truth": res["ground_truth"]["cifar10"], "rank": res["ground_truth"]["cifar10_rank"],
            "string": res["best_arch"]["string"], "param_free": sum(e in PARAMETER_FREE for e in edges) / len(edges),
            "tau_batch_stats": rk["batch_stats"]["kendall_tau"], "tau_recalibrated": rk["recalibrated"]["kendall_tau"],
            "search_time_s": res["search_time_s"], "shared_acc": last["acc"],
            "ctrl_entropy": last.get("ctrl_entropy"), "ctrl_op_freq": last.get("ctrl_op_freq")}


def ms(xs: list[float], digits: int = 2) -> str:
    xs = [x for x in xs if x is not None]
    if len(xs) < 2:
        return f"{xs[0]:.{digits}f}" if xs else "—"
    return f"{statistics.mean(xs):.{digits}f} ± {statistics.stdev(xs):.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="../shared/data/cifar10-jpg")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated names of MODES")
    ap.add_argument("--rank-archs", type=int, default=200)
    ap.add_argument("--json", help="write all results here (rewritten after every run)")
    ap.add_argument("overrides", nargs="*", help="section.key=value for every run")
    args = ap.parse_args(argv)
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    seeds = [int(s) for s in args.seeds.split(",")]
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.modes.split(","):
            for seed in seeds:
                r = one(args.data, MODES[name], seed, args.rank_archs, args.overrides, Path(tmp), env)
                results.setdefault(name, []).append(r)
                print(f"{name} seed {seed}: {r['truth']:.2f} % ({r['string']}), tau {r['tau_recalibrated']:.3f}, "
                      f"param-free {r['param_free']:.2f}, {r['search_time_s']:.0f} s", flush=True)
                if args.json:
                    Path(args.json).write_text(json.dumps({"seeds": seeds, "overrides": args.overrides,
                                                           "modes": {k: MODES[k] for k in results},
                                                           "results": results}, indent=1))
    print(f"\n| mode | derived cell's CIFAR-10 test acc (%) | per seed | share of parameter-free ops | "
          f"Kendall tau (recalibrated) | tau (batch stats) | search time (s) |")
    print("|---|---|---|---|---|---|---|")
    for name, rs in results.items():
        per_seed = " ".join(f"{r['truth']:.2f}" for r in rs)
        print(f"| {name} | {ms([r['truth'] for r in rs])} | {per_seed} | "
              f"{ms([r['param_free'] for r in rs])} | {ms([r['tau_recalibrated'] for r in rs], 3)} | "
              f"{ms([r['tau_batch_stats'] for r in rs], 3)} | {ms([r['search_time_s'] for r in rs], 0)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
