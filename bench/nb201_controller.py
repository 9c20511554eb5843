"""Controller-only search on NAS-Bench-201 (``controller.reward=table``): ENAS's controller vs random search.

For each controller setting and seed, a search samples ``--budget`` cells; the reward of a cell is its
table accuracy (CIFAR-10, 200 epochs) plus optional Gaussian noise; the search returns its best cell by
reward, whose ground truth is reported. Random search is uniform sampling with the same budget and the same
selection by (noisy) reward. Prints a markdown table and writes JSON.

    python bench/nb201_controller.py --seeds 0,1,2,3,4 --budget 500 --json nb201_controller.json

Needs the table (``../shared/data/nas-bench-201`` or ``$ENAS_NB201``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from enas import api, config as C

# name -> overrides on the nb201-table preset
SETTINGS = {
    "paper (micro search controller: lr 3.5e-3, eps 1e-3, tanh 1.1/2.5)": [
        "controller.lr=0.0035", "controller.eps=0.001", "controller.tanh_constant=1.1",
        "controller.op_tanh_reduce=2.5"],
    "nb201 default": [],
}


def run_one(overrides: list[str], seed: int, budget: int, noise: float, kind: str) -> dict:
    cfg = C.load_config("nb201-table", overrides=overrides + [
        f"search.table_budget={budget}", f"controller.reward_noise={noise}", f"controller.kind={kind}",
        f"run.seed={seed}"])
    with tempfile.TemporaryDirectory() as tmp:
        res = api.search(cfg, Path(tmp) / "run")
        rows = [json.loads(x) for x in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    return {"seed": seed, "truth": res["ground_truth"]["cifar10"], "rank": res["ground_truth"]["cifar10_rank"],
            "found_at": res["found_at_sample"], "final_entropy": rows[-1]["entropy"],
            "last_mean_truth": rows[-1]["truth"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--budget", type=int, default=500)
    ap.add_argument("--noise", default="0", help="comma-separated reward noise levels (SD, accuracy fraction)")
    ap.add_argument("--setting", action="append", default=[], metavar="NAME=OVERRIDES",
                    help="extra setting, overrides separated by spaces (repeatable)")
    ap.add_argument("--json", help="write all results here")
    args = ap.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    settings = dict(SETTINGS)
    for s in args.setting:
        name, _, ov = s.partition("=")
        settings[name] = ov.split()
    out = []
    print(f"| setting | reward noise | controller | best-found cell's CIFAR-10 test acc (mean ± sd over {len(seeds)} "
          f"seeds) | per seed | ENAS > random (seeds) | final entropy |")
    print("|---|---|---|---|---|---|---|")
    for noise in [float(x) for x in args.noise.split(",")]:
        rnd = [run_one([], s, args.budget, noise, "random") for s in seeds]
        for name, ov in settings.items():
            enas = [run_one(ov, s, args.budget, noise, "enas") for s in seeds]
            wins = sum(e["truth"] > r["truth"] for e, r in zip(enas, rnd))
            ties = sum(e["truth"] == r["truth"] for e, r in zip(enas, rnd))
            ts = [e["truth"] for e in enas]
            print(f"| {name} | {noise} | enas | {statistics.mean(ts):.2f} ± {statistics.stdev(ts):.2f} | "
                  f"{' '.join(f'{t:.2f}' for t in ts)} | {wins} ({ties} ties) of {len(seeds)} | "
                  f"{statistics.mean(e['final_entropy'] for e in enas):.2f} |")
            out.append({"setting": name, "overrides": ov, "noise": noise, "enas": enas, "random": rnd,
                        "wins": wins, "ties": ties})
        ts = [r["truth"] for r in rnd]
        print(f"| random search | {noise} | random | {statistics.mean(ts):.2f} ± {statistics.stdev(ts):.2f} | "
              f"{' '.join(f'{t:.2f}' for t in ts)} | — | 9.66 |")
    if args.json:
        Path(args.json).write_text(json.dumps({"budget": args.budget, "seeds": seeds, "results": out}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
