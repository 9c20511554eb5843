"""Shared-weight step time against the peer, NNI 3.0's ENAS, on the same CPU, alternated in one run (issue #16).

Both sides train the micro supernet on synthetic 3x32x32 data with SGD at lr 0.05 and the same torch thread
count, at the peer's two presets:

* ``small``: 3 + 2 cells (2 reductions), 5 nodes, C=8, batch 32;
* ``paper-micro``: 6 + 2 cells, 5 nodes, C=20, batch 160 (the reference's micro search).

One process per measurement, in rounds: NNI, enas (each layout asked for), NNI, enas, ... so that other load on
the machine falls on every variant alike. enas's step is ``sample one architecture from the controller`` plus
``search.shared_step`` (forward, backward, clip, SGD), the step the search loop runs; NNI's is its own
``training_step`` (``../shared/peers/nni_enas_bench.py``, which includes its controller's resampling). This script
installs nothing: pass ``--nni-python`` (the peer venv's python, see ``../shared/peers/README.md``); without it
only enas is timed and the table says so.

    python bench/peer.py --nni-python .nni-venv/bin/python [--rounds 2] [--out docs/benchmarks.md]
    python bench/peer.py --layouts contiguous,channels_last,auto     # enas alone
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER = ROOT.parent / "shared" / "peers" / "nni_enas_bench.py"
PRESETS = {  # the peer's shapes, in enas settings (num_layers counts the normal cells)
    "small": {"num_layers": 3, "nodes": 5, "channels": 8, "batch": 32},
    "paper-micro": {"num_layers": 6, "nodes": 5, "channels": 20, "batch": 160},
}
LAYOUTS = {"contiguous": "off", "channels_last": "on", "auto": "auto"}


# ---------------------------------------------------------------------------------------------- enas worker
def enas_worker(preset: str, layout: str, threads: int, warmup: int, steps: int, bf16: str) -> dict:
    sys.path.insert(0, str(ROOT / "bench"))
    import torch

    import common as B
    B.setup_threads(threads)
    p = PRESETS[preset]
    cfg = B.load_cfg("micro-search", [
        f"space_cfg.num_nodes={p['nodes']}", f"net.num_layers={p['num_layers']}", f"net.channels={p['channels']}",
        f"shared.batch_size={p['batch']}", "shared.lr_max=0.05", "shared.lr_min=0.05", "net.aux_weight=0",
        "net.keep_prob=1.0", f"run.channels_last={LAYOUTS[layout]}", f"run.bf16={bf16}", "run.device=cpu"])
    n = p["batch"] * (warmup + steps + 1)
    run = B.make_run(cfg, n_train=n, n_valid=p["batch"])
    times = []
    for k in range(warmup + steps):
        t0 = time.perf_counter()
        arch = B.sample_one(run)
        B.shared_step(run, arch)
        run.sums["loss"].item()  # the step is done (CPU: synchronous anyway)
        if k >= warmup:
            times.append(time.perf_counter() - t0)
    from enas import build
    return {"side": "enas", "layout": layout, "bf16": bf16, "preset": preset,
            "channels_last": build.channels_last(cfg.run.channels_last, torch.device("cpu"), cfg.space),
            "median_s": statistics.median(times), "times_s": times,
            "params": sum(q.numel() for q in run.model.parameters())}


# ---------------------------------------------------------------------------------------------- driver
def run_enas(preset: str, layout: str, a) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", preset, "--layout", layout, "--threads",
           str(a.threads), "--warmup", str(a.warmup), "--steps", str(a.steps), "--bf16", a.bf16]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if r.returncode != 0:
        sys.exit(f"enas worker failed ({preset}, {layout}):\n{r.stderr[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_nni(preset: str, a) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "nni.json"
        cmd = [a.nni_python, str(PEER), "--preset", preset, "--warmup", str(a.warmup), "--steps", str(a.steps),
               "--ctrl-steps", "2", "--threads", str(a.threads), "--progress", "0", "--json", str(out)]
        env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
        if r.returncode != 0:
            sys.exit(f"NNI peer failed ({preset}):\n{r.stderr[-2000:]}")
        res = json.loads(out.read_text())
    return {"side": "nni", "preset": preset, "median_s": res["timing_s"]["shared_step_median"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nni-python", default=None, help="python of a venv with NNI 3.0 (../shared/peers/README.md)")
    ap.add_argument("--presets", default="small,paper-micro")
    ap.add_argument("--layouts", default="contiguous,channels_last", help="enas layouts: " + ",".join(LAYOUTS))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--bf16", default="off", choices=["off", "on", "auto"])
    ap.add_argument("--out", default=None, help="append the table to this markdown file")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--layout", default="contiguous", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(enas_worker(a.worker, a.layout, a.threads, a.warmup, a.steps, a.bf16)))
        return
    if a.nni_python and not PEER.exists():
        sys.exit(f"peer script not found: {PEER}")
    presets = [x for x in a.presets.split(",") if x]
    layouts = [x for x in a.layouts.split(",") if x]
    bad = [x for x in presets if x not in PRESETS] + [x for x in layouts if x not in LAYOUTS]
    if bad:
        sys.exit(f"unknown preset or layout: {', '.join(bad)}")
    res: dict[tuple, list[float]] = {}
    for r in range(a.rounds):
        for preset in presets:
            if a.nni_python:
                res.setdefault((preset, "nni"), []).append(run_nni(preset, a)["median_s"])
                print(f"round {r} {preset} nni {res[(preset, 'nni')][-1]:.3f} s", file=sys.stderr)
            for lay in layouts:
                res.setdefault((preset, lay), []).append(run_enas(preset, lay, a)["median_s"])
                print(f"round {r} {preset} enas {lay} {res[(preset, lay)][-1]:.3f} s", file=sys.stderr)
    head = "| config | " + ("NNI 3.0 step | " if a.nni_python else "") + " | ".join(
        f"enas {lay}" + (" / NNI" if a.nni_python else "") for lay in layouts) + " |"
    lines = [f"Shared-weight step, median per process, rounds listed ({a.rounds} rounds, {a.threads} torch threads, "
             f"{a.warmup} warm-up + {a.steps} timed steps, bf16 {a.bf16}; "
             f"{'alternated with NNI 3.0' if a.nni_python else 'NNI not given: enas alone'})", "", head,
             "|---|" + "---|" * ((1 if a.nni_python else 0) + len(layouts))]
    for preset in presets:
        cells = [preset]
        nni = res.get((preset, "nni"))
        if nni:
            cells.append(" / ".join(f"{x:.3f} s" for x in nni))
        for lay in layouts:
            e = res[(preset, lay)]
            if nni:
                cells.append(" / ".join(f"{x:.3f} s ({x / y:.2f})" for x, y in zip(e, nni)))
            else:
                cells.append(" / ".join(f"{x:.3f} s" for x in e))
        lines.append("| " + " | ".join(cells) + " |")
    sys.path.insert(0, str(ROOT / "bench"))
    import common as B
    B.emit_table(lines, a.out)


if __name__ == "__main__":
    main()
