"""Exact resume: a search (or training) killed at arbitrary points - SIGKILL of a real subprocess, including
in the middle of a checkpoint write - and resumed ends with the same metrics, architectures and weights as a
run that was never interrupted. SIGINT/SIGTERM stop gracefully with exit code 130 and a resume hint."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from enas import checkpoint
from conftest import drop_clock

ROOT = Path(__file__).resolve().parents[1]
# tiny preset, a checkpoint after every shared step: 2 epochs x 8 steps, then derive and a 1-epoch retrain
SEARCH = ["search", "--preset", "tiny", "--quiet", "search.checkpoint_every=1"]
# number of checkpoint saves in one uninterrupted search: per epoch 7 (steps 1..7) + after the shared
# phase + epoch end = 9, so 18, then 1 after the final derive; the retrain saves 7 + 1 + 1 more.
SAVES_EPOCH0_END = 9


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != checkpoint.CRASH_ENV}
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # fast on 2 shared cores; same in every run
    env.update(extra)
    return env


def _start(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "enas", *args], cwd=cwd, env=_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(p: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    out, err = p.communicate(timeout=timeout)
    return p.returncode, out, err


def _run(args: list[str], cwd: Path, **env: str) -> tuple[int, str, str]:
    return _finish(_start(args, cwd, **env))


def _wait_for(p: subprocess.Popen, cond, what: str, timeout: float = 180) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if p.poll() is not None:
            out, err = p.communicate()
            raise AssertionError(f"process ended (rc {p.returncode}) before {what}:\n{err[-3000:]}")
        if time.monotonic() > end:
            p.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def _saved_step(path: Path) -> int:
    try:
        return checkpoint.load(path)["global_step"]
    except checkpoint.CheckpointError:
        return -1


def _resume_to_end(run_dir: Path, cwd: Path, verb: str = "search") -> str:
    args = [verb, "--resume", str(run_dir), "--quiet"]
    rc, out, err = _run(args, cwd)
    assert rc == 0, err[-3000:]
    assert "Traceback" not in err
    return err


# ------------------------------------------------------------------------------------------ comparison
def _metrics(path: Path) -> list[dict]:
    return [drop_clock(json.loads(line)) for line in path.read_text().splitlines()]


def _assert_tensors_equal(a: dict, b: dict, what: str) -> None:
    assert a.keys() == b.keys(), what
    for k in a:
        assert torch.equal(a[k], b[k]), f"{what}: {k} differs"


def assert_same_search(ref: Path, got: Path) -> None:
    assert _metrics(got / "metrics.jsonl") == _metrics(ref / "metrics.jsonl")
    for name in ("best_arch.json", "derive.json", "archs.jsonl", "final/arch.json"):
        assert (got / name).read_text() == (ref / name).read_text(), name
    assert _metrics(got / "final/metrics.jsonl") == _metrics(ref / "final/metrics.jsonl")
    assert drop_clock(json.loads((got / "result.json").read_text())) == \
        drop_clock(json.loads((ref / "result.json").read_text()))
    _assert_tensors_equal(torch.load(got / "final/model.pt", weights_only=True),
                          torch.load(ref / "final/model.pt", weights_only=True), "final/model.pt")
    a, b = checkpoint.load(ref / "checkpoint.pt"), checkpoint.load(got / "checkpoint.pt")
    _assert_tensors_equal(b["model"], a["model"], "search supernet weights")
    _assert_tensors_equal(b["controller"], a["controller"], "controller weights")
    assert torch.equal(a["baseline"], b["baseline"])
    for name, g in a["rng"].items():
        assert torch.equal(g, b["rng"][name]), f"generator {name} state differs"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One uninterrupted search (+ retrain) with the same settings as every interrupted one."""
    cwd = tmp_path_factory.mktemp("ref")
    rc, out, err = _run([*SEARCH, "--out", "ref"], cwd)
    assert rc == 0, err[-3000:]
    ref = cwd / "ref"
    assert _lines(ref / "metrics.jsonl") == 2 and _lines(ref / "archs.jsonl") == 2
    return ref


# ---------------------------------------------------------------------------------------------- tests
def test_kill_during_checkpoint_writes_then_resume_is_exact(reference, tmp_path):
    """Three SIGKILLs inside checkpoint.save (half-written temporary file; temporary file complete; old
    checkpoint moved to .prev but the new one not yet in place), then a SIGKILL from outside during the
    retrain; each time the run resumes from what is on disk and the end result equals the reference."""
    run = tmp_path / "run"
    # 1) the 4th save dies with half of the temporary file written: checkpoint.pt is the 3rd save, intact
    rc, _, err = _run([*SEARCH, "--out", "run"], tmp_path, ENAS_TEST_CRASH_AT="write:4")
    assert rc == -signal.SIGKILL, err[-2000:]
    assert (run / "checkpoint.pt.tmp").exists()
    assert checkpoint.load(run / "checkpoint.pt")["global_step"] == 3
    # 2) resumed; its 6th save (the one at the end of epoch 0) dies after the temporary file is complete:
    # the next resume starts from the checkpoint after the shared phase, so epoch 0's controller phase,
    # derive and metrics row are computed again (and must not be duplicated)
    rc, _, err = _run(["search", "--resume", "run", "--quiet"], tmp_path,
                      ENAS_TEST_CRASH_AT=f"tmp:{SAVES_EPOCH0_END - 3}")
    assert rc == -signal.SIGKILL, err[-2000:]
    state = checkpoint.load(run / "checkpoint.pt")
    assert (state["epoch"], state["phase"]) == (0, "controller")
    assert _lines(run / "metrics.jsonl") == 1 and _lines(run / "archs.jsonl") == 1
    # 3) resumed; dies between moving checkpoint.pt to .prev and renaming the new one into place
    rc, _, err = _run(["search", "--resume", "run", "--quiet"], tmp_path, ENAS_TEST_CRASH_AT="swap:4")
    assert rc == -signal.SIGKILL, err[-2000:]
    assert not (run / "checkpoint.pt").exists() and (run / "checkpoint.pt.prev").exists()
    # 4) resumed (from .prev, with a warning); killed from outside once the retrain has checkpointed
    p = _start(["search", "--resume", "run", "--quiet"], tmp_path)
    _wait_for(p, lambda: (run / "final/checkpoint.pt").exists(), "the first retrain checkpoint")
    p.send_signal(signal.SIGKILL)
    rc, _, err = _finish(p)
    assert rc == -signal.SIGKILL
    assert "checkpoint.pt.prev" in err  # the fallback was announced
    # 5) resumed to the end
    _resume_to_end(run, tmp_path)
    assert_same_search(reference, run)
    # resuming a finished run reports its result and changes no file
    before = {f: f.read_bytes() for f in run.rglob("*") if f.is_file() and f.name != "result.json"}
    assert "best architecture" in _run(["search", "--resume", "run", "--quiet"], tmp_path)[1]
    assert before == {f: f.read_bytes() for f in run.rglob("*") if f.is_file() and f.name != "result.json"}


def test_graceful_stop_then_resume_is_exact(reference, tmp_path):
    """SIGTERM during the search and SIGINT during the retrain: each finishes its step, checkpoints and exits
    130 with a resume hint; resuming ends with the same epoch rows, architectures and final weights."""
    run = tmp_path / "run"
    p = _start([*SEARCH, "--out", "run", "run.log_every=1"], tmp_path)
    _wait_for(p, lambda: _lines(run / "metrics.jsonl") >= 3, "three metrics rows")
    p.send_signal(signal.SIGTERM)
    rc, out, err = _finish(p)
    assert rc == 130, err[-2000:]
    assert f"enas search --resume {run.name}" in err and "Traceback" not in err
    assert checkpoint.load(run / "checkpoint.pt")["global_step"] < 16
    # stop again during the retrain (inside the same search command)
    p = _start(["search", "--resume", "run", "--quiet"], tmp_path)
    _wait_for(p, lambda: (run / "final/checkpoint.pt").exists(), "the first retrain checkpoint")
    p.send_signal(signal.SIGINT)
    rc, out, err = _finish(p)
    assert rc in (0, 130), err[-2000:]  # 0 only if the retrain was already past its last step
    assert "Traceback" not in err
    if rc == 130:
        assert f"enas search --resume {run.name}" in err  # the search's directory, not final/
        _resume_to_end(run, tmp_path)
    # rows were logged every step here, so compare the epoch rows with the reference's
    ref_epochs = [r for r in _metrics(reference / "metrics.jsonl") if r["kind"] == "epoch"]
    got_epochs = [r for r in _metrics(run / "metrics.jsonl") if r["kind"] == "epoch"]
    assert got_epochs == ref_epochs
    shared_rows = [r for r in _metrics(run / "metrics.jsonl") if r["kind"] == "shared"]
    assert [r["global_step"] for r in shared_rows] == list(range(1, 17))  # none lost, none duplicated
    for name in ("best_arch.json", "derive.json", "archs.jsonl"):
        assert (run / name).read_text() == (reference / name).read_text(), name
    assert _metrics(run / "final/metrics.jsonl") == _metrics(reference / "final/metrics.jsonl")
    _assert_tensors_equal(torch.load(run / "final/model.pt", weights_only=True),
                          torch.load(reference / "final/model.pt", weights_only=True), "final/model.pt")


def test_train_resume_is_exact(reference, tmp_path):
    """`enas train ARCH` killed mid-write, stopped by SIGTERM, resumed with `enas train [ARCH] --resume`: the
    result equals the reference search's own retrain of the same architecture (same config)."""
    arch = str(reference / "best_arch.json")
    run = tmp_path / "run"
    rc, _, err = _run(["train", arch, "--preset", "tiny", "--quiet", "--out", "run", "search.checkpoint_every=1"],
                      tmp_path, ENAS_TEST_CRASH_AT="write:3")
    assert rc == -signal.SIGKILL, err[-2000:]
    assert checkpoint.load(run / "checkpoint.pt")["global_step"] == 2
    p = _start(["train", "--resume", "run", "--quiet"], tmp_path)
    _wait_for(p, lambda: _saved_step(run / "checkpoint.pt") >= 4, "a checkpoint at step 4")
    p.send_signal(signal.SIGTERM)
    rc, out, err = _finish(p)
    assert rc == 130, err[-2000:]
    assert f"enas train --resume {run.name}" in err and "Traceback" not in err
    _resume_to_end(run, tmp_path, "train")
    ref = reference / "final"
    assert _metrics(run / "metrics.jsonl") == _metrics(ref / "metrics.jsonl")
    assert (run / "arch.json").read_text() == (ref / "arch.json").read_text()
    assert drop_clock(json.loads((run / "result.json").read_text())) == \
        drop_clock(json.loads((ref / "result.json").read_text()))
    _assert_tensors_equal(torch.load(run / "model.pt", weights_only=True),
                          torch.load(ref / "model.pt", weights_only=True), "model.pt")
    rc, out, err = _run(["train", arch, "--resume", "run", "--quiet"], tmp_path)  # ARCH may be repeated
    assert rc == 0 and "test accuracy" in out, err[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("crash", ["write:1", "write:19", "swap:28"])
def test_single_crash_anywhere_is_exact(reference, tmp_path, crash):
    """One crash inside a checkpoint write: the very first save (no checkpoint yet: the run starts again in
    its directory), the save after the final derive, the retrain's last save (model.pt already written)."""
    rc, _, err = _run([*SEARCH, "--out", "run"], tmp_path, ENAS_TEST_CRASH_AT=crash)
    assert rc == -signal.SIGKILL, err[-2000:]
    if not (tmp_path / "run/checkpoint.pt").exists():
        with open(tmp_path / "run/metrics.jsonl", "a") as f:
            f.write('{"kind": "garbage"}\n')  # a row of the lost attempt: must not survive the restart
    _resume_to_end(tmp_path / "run", tmp_path)
    assert_same_search(reference, tmp_path / "run")


@pytest.mark.slow
def test_external_kills_at_metrics_rows(reference, tmp_path):
    """SIGKILL from outside right after the k-th per-step metrics row appears, for several k."""
    run = tmp_path / "run"
    args = [*SEARCH, "--out", "run", "run.log_every=1"]
    for k in (2, 9, 14):
        p = _start(args, tmp_path)
        _wait_for(p, lambda: _lines(run / "metrics.jsonl") >= k, f"metrics row {k}")
        p.send_signal(signal.SIGKILL)
        _finish(p)
        args = ["search", "--resume", "run", "--quiet"]
    _resume_to_end(run, tmp_path)
    rows = _metrics(run / "metrics.jsonl")
    assert [r for r in rows if r["kind"] == "epoch"] == _metrics(reference / "metrics.jsonl")
    assert [r["global_step"] for r in rows if r["kind"] == "shared"] == list(range(1, 17))
    for name in ("best_arch.json", "derive.json", "archs.jsonl"):
        assert (run / name).read_text() == (reference / name).read_text(), name
    _assert_tensors_equal(torch.load(run / "final/model.pt", weights_only=True),
                          torch.load(reference / "final/model.pt", weights_only=True), "final/model.pt")
