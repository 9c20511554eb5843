"""How far apart do two searches drift when they differ only in float rounding? (issue #20 item 5)

One process and two ``torchrun`` processes compute the same global-batch gradient, but not bit for bit: the
batch-norm statistics and the gradient sums are added in a different order. So do one process on 1 and on 2
torch threads. This script measures what such a rounding difference becomes over a search, on any preset, by
running the first shared steps of the search in several variants and comparing their weights after every step:

* ``reference``: one process, 1 thread (every variant is compared with it);
* ``threads2``: one process, 2 torch threads;
* ``ulp``: one process, 1 thread, every initial weight multiplied by ``1 + 2**-23 * N(0, 1)`` (one-ulp noise);
* ``procs2``: ``torchrun --nproc_per_node=2`` (gloo, 1 thread each), the global batch split between the ranks.

``ulp`` is the control: it is a rounding-sized change with no distributed code involved, so if it drifts as
fast as ``procs2`` the drift is a property of training, not a bug of the distributed path.

    python bench/rounding.py [--preset default] [--steps 30] [--out docs/benchmarks.md]

A worker mode (``--worker DIR``) runs one variant and writes the weights after each step; the tests use it
(tests/test_distributed.py) to check that 1 and 2 processes agree over the first steps of every shipped preset.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------- worker
def worker(out: Path, preset: str, steps: int, overrides: list[str], ulp: bool) -> None:
    """Run ``steps`` shared steps (then one controller phase) of a search; rank 0 writes ``out/trace.pt``."""
    import torch

    from enas import config as C, distributed as D, search as S

    cfg = C.load_config(preset=preset, overrides=["run.report=false", "run.progress=false", *overrides])
    dist = D.from_env()
    if dist.enabled:
        dist, _ = D.init("cpu")
    scratch = Path(tempfile.mkdtemp(prefix="enas-rounding-"))
    run = S.setup(cfg, scratch, lambda: False, None, dist=dist)
    run.local_stop = lambda: False
    if ulp:
        g = torch.Generator().manual_seed(12345)
        with torch.no_grad():
            for p in run.model.parameters():
                p.mul_(1 + 2.0 ** -23 * torch.randn(p.shape, generator=g))
    init = torch.cat([p.detach().reshape(-1).double() for p in run.model.parameters()])
    weights, losses, archs = [], [], []
    S.start_epoch(run)
    done = 0
    while done < steps:
        if run.step >= run.task.steps_per_epoch:
            run.epoch += 1
            run.step = 0
            S.start_epoch(run)
        before = run.sums["loss"].item()
        S.shared_step(run, run.epoch_archs[run.step])
        losses.append(run.sums["loss"].item() - before)
        archs.append(run.epoch_actions[run.step].tolist())
        weights.append(torch.cat([p.detach().reshape(-1).double() for p in run.model.parameters()]))
        run.step += 1
        done += 1
    ctrl = S.train_controller(run)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        torch.save({"init": init, "weights": torch.stack(weights), "losses": losses, "archs": archs,
                    "ctrl_reward": ctrl.get("reward"), "controller": {k: v.clone() for k, v in
                                                                    run.controller.state_dict().items()}},
                   out / "trace.pt")
    D.teardown(dist)


# ---------------------------------------------------------------------------------------------- driver
def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_variant(name: str, out: Path, preset: str, steps: int, overrides: list[str],
                timeout: int = 900) -> subprocess.CompletedProcess:
    """Run one variant as a fresh process (or two, for ``procs2``) and return the finished process."""
    threads = "2" if name == "threads2" else "1"
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    args = [str(Path(__file__).resolve()), "--worker", str(out), "--preset", preset, "--steps", str(steps)]
    if name == "ulp":
        args.append("--ulp")
    args += ["--", *overrides]
    if name == "procs2":
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr", "127.0.0.1",
               "--master_port", str(_port()), *args]
    else:
        cmd = [sys.executable, *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def load_trace(out: Path) -> dict:
    import torch
    return torch.load(out / "trace.pt", weights_only=True)


def drift(ref: dict, other: dict) -> list[float]:
    """Per step: the largest weight difference relative to the largest weight (max |w_a - w_b| / max |w_a|)."""
    scale = ref["weights"].abs().amax(dim=1)
    return ((ref["weights"] - other["weights"]).abs().amax(dim=1) / scale).tolist()


def first_step_over(d: list[float], level: float) -> int | None:
    return next((k + 1 for k, v in enumerate(d) if v > level), None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="default")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--variants", default="threads2,ulp,procs2")
    ap.add_argument("--out", default=None, help="append the table to this markdown file")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--ulp", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    if a.worker:
        worker(Path(a.worker), a.preset, a.steps, a.overrides, a.ulp)
        return
    variants = ["reference", *[v for v in a.variants.split(",") if v]]
    tmp = Path(tempfile.mkdtemp(prefix="enas-rounding-bench-"))
    traces = {}
    for v in variants:
        r = run_variant(v, tmp / v, a.preset, a.steps, a.overrides)
        if r.returncode != 0:
            sys.exit(f"variant {v} failed:\n{r.stderr[-2000:]}")
        traces[v] = load_trace(tmp / v)
    ref = traces["reference"]
    marks = [1, 2, 3, 5, 10, 20, 30, 50, 100]
    marks = [m for m in marks if m <= a.steps]
    lines = [f"Preset `{a.preset}` {' '.join(a.overrides)}, {a.steps} shared steps; max |dw| / max |w| after step k "
             f"(reference: 1 process, 1 thread)", "",
             "| variant | " + " | ".join(f"k={m}" for m in marks) + " | first k > 1e-4 | same archs | loss k=1 diff |",
             "|---|" + "---|" * (len(marks) + 3)]
    for v in variants[1:]:
        d = drift(ref, traces[v])
        same = ref["archs"] == traces[v]["archs"]
        l1 = abs(ref["losses"][0] - traces[v]["losses"][0]) / max(abs(ref["losses"][0]), 1e-12)
        lines.append(f"| {v} | " + " | ".join(f"{d[m - 1]:.1e}" for m in marks)
                     + f" | {first_step_over(d, 1e-4) or '-'} | {'yes' if same else 'no'} | {l1:.1e} |")
    sys.path.insert(0, str(ROOT / "bench"))
    import common as B
    B.emit_table(lines, a.out)
    print(json.dumps({v: drift(ref, traces[v]) for v in variants[1:]}), file=sys.stderr)


if __name__ == "__main__":
    main()
