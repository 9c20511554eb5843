"""torchrun on CPU (gloo): two processes compute what one process computes with the same global batch."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from enas import checkpoint, distributed as D

ARGS = ["--preset", "tiny", "--quiet", "--epochs", "2", "search.retrain=false", "data.limit_per_class=26",
        "shared.batch_size=64", "run.report=false"]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def _torchrun(n: int, args: list[str], cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={n}", "--master_addr", "127.0.0.1",
           "--master_port", str(_port()), "-m", "enas", *args]
    return subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)


def _single(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "enas", *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=240)


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].float() - b[k].float()).abs().max().item() for k in a if a[k].is_floating_point())


def test_two_gloo_processes_match_one(tmp_path: Path) -> None:
    one = _single(["search", *ARGS, "--out", "one"], tmp_path)
    assert one.returncode == 0, one.stderr
    two = _torchrun(2, ["search", *ARGS, "--out", "two"], tmp_path)
    assert two.returncode == 0, two.stderr
    a, b = checkpoint.load(tmp_path / "one" / "checkpoint.pt"), checkpoint.load(tmp_path / "two" / "checkpoint.pt")
    assert torch.equal(a["epoch_actions"], b["epoch_actions"])  # the same sampled architectures
    assert (tmp_path / "one" / "archs.jsonl").read_text() == (tmp_path / "two" / "archs.jsonl").read_text()
    assert _max_diff(a["model"], b["model"]) < 1e-4  # shared weights
    assert _max_diff(a["controller"], b["controller"]) < 1e-5
    assert abs(a["baseline"].item() - b["baseline"].item()) < 1e-5
    rows = [[json.loads(x) for x in (tmp_path / d / "metrics.jsonl").read_text().splitlines()] for d in ("one", "two")]
    for r1, r2 in zip(*rows):
        assert r1["kind"] == r2["kind"]
        assert r1["loss"] == pytest.approx(r2["loss"], rel=1e-4)
        if "ctrl_reward" in r1:
            assert r1["ctrl_reward"] == pytest.approx(r2["ctrl_reward"], abs=1e-6)
    # only rank 0 wrote: one set of files, and no scratch directory of another rank left behind
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())
    assert two.stdout.count("best architecture:") == 1


def test_resume_under_torchrun(tmp_path: Path) -> None:
    one = _single(["search", *ARGS, "--out", "one"], tmp_path)
    assert one.returncode == 0, one.stderr
    crash = {**_env(), "ENAS_TEST_CRASH_AT": "tmp:3"}  # rank 0 (the only writer) is SIGKILLed at its 3rd save
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr", "127.0.0.1",
           "--master_port", str(_port()), "-m", "enas", "search", *ARGS, "--out", "two"]
    killed = subprocess.run(cmd, cwd=tmp_path, env=crash, capture_output=True, text=True, timeout=240)
    assert killed.returncode != 0
    r = _torchrun(2, ["search", "--resume", "two", "--quiet"], tmp_path)
    assert r.returncode == 0, r.stderr
    a, b = checkpoint.load(tmp_path / "one" / "checkpoint.pt"), checkpoint.load(tmp_path / "two" / "checkpoint.pt")
    assert torch.equal(a["epoch_actions"], b["epoch_actions"])
    assert (tmp_path / "one" / "archs.jsonl").read_text() == (tmp_path / "two" / "archs.jsonl").read_text()
    assert _max_diff(a["model"], b["model"]) < 1e-4
    assert _max_diff(a["controller"], b["controller"]) < 1e-5


def test_distributed_final_training_exits_cleanly(tmp_path: Path) -> None:
    arch = tmp_path / "arch.json"
    one = _single(["search", *ARGS, "--epochs", "1", "--out", "s"], tmp_path)
    assert one.returncode == 0, one.stderr
    arch.write_text((tmp_path / "s" / "best_arch.json").read_text())
    r = _torchrun(2, ["train", str(arch), "--preset", "tiny", "--quiet", "--out", "t", "data.limit_per_class=26",
                      "train.batch_size=64", "run.report=false"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "t" / "model.pt").exists() and (tmp_path / "t" / "result.json").exists()


def test_shard_sizes_cover_the_batch() -> None:
    for n in (7, 64, 65):
        for w in (1, 2, 3):
            parts = [D.shard(n, D.Dist(r, w, r)) for r in range(w)]
            assert [i for s in parts for i in range(n)[s]] == list(range(n))


def test_single_process_is_untouched() -> None:
    assert D.from_env({}) is D.SINGLE
    assert not D.SINGLE.enabled and D.SINGLE.is_main


@pytest.mark.slow
def test_twenty_consecutive_runs_exit_zero(tmp_path: Path) -> None:
    # a search, then its final training under DDP (the teardown that aborted 1 run in 10 when done carelessly)
    args = ["search", "--preset", "tiny", "--quiet", "--epochs", "1", "data.limit_per_class=13",
            "shared.batch_size=32", "train.batch_size=32", "run.report=false", "search.derive_samples=2"]
    codes = []
    for k in range(20):
        r = _torchrun(2, [*args, "--out", f"r{k}"], tmp_path)
        codes.append(r.returncode)
        assert r.returncode == 0, (k, r.stderr[-2000:])
    assert codes == [0] * 20
