"""Run directories that cannot be corrupted (issue #20), through real `python -m enas` processes.

The promise: bad input ends with one line on stderr and exit status 2; an existing run directory is never
modified by a failed command. Here: a table of inputs that used to break it (values that passed the config
check and crashed later, resumes with a checkpoint of another run or logs shorter than recorded, outputs that
overwrote other runs), each checked for the exit status, the one line and a byte-identical working directory;
the `.prev` fallback and the resume of runs made before run ids, which must end exactly as an uninterrupted
run; the run lock with concurrent processes (a second search, a resume while the first still runs, two resumes,
a stale lock of a killed process); and the one edge for errors (an internal error names a saved traceback).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from enas import checkpoint
from conftest import drop_clock

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--preset", "tiny", "run.progress=false"]
# the settings of every search here: a checkpoint after every shared step (2 epochs x 8 steps), a 1-epoch retrain
SEARCH = ["search", *TINY, "search.checkpoint_every=1"]


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != checkpoint.CRASH_ENV}
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("ENAS_DATA", None)
    env.update(extra)
    return env


def _start(args: list[str], cwd: Path, **env: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "enas", *args], cwd=cwd, env=_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "enas", *args], cwd=cwd, env=_env(**env), capture_output=True,
                          text=True, timeout=300)


def _digest(root: Path) -> dict[str, str]:
    """Every file's sha256 and every directory under ``root``: equal digests = byte-identical trees."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def _one_error_line(r: subprocess.CompletedProcess) -> str:
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
    assert "Traceback" not in r.stderr + r.stdout
    return lines[0]


def _rows(path: Path) -> list[dict]:
    return [drop_clock(json.loads(line)) for line in path.read_text().splitlines()]


def assert_same_search(ref: Path, got: Path) -> None:
    """``got`` ended exactly as the uninterrupted ``ref`` (metrics, architectures, final weights)."""
    assert _rows(got / "metrics.jsonl") == _rows(ref / "metrics.jsonl")
    for name in ("best_arch.json", "derive.json", "archs.jsonl", "final/arch.json"):
        assert (got / name).read_text() == (ref / name).read_text(), name
    assert _rows(got / "final/metrics.jsonl") == _rows(ref / "final/metrics.jsonl")
    a = torch.load(ref / "final/model.pt", weights_only=True)
    b = torch.load(got / "final/model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    for log in ("metrics.jsonl", "archs.jsonl", "final/metrics.jsonl"):
        assert b"\0" not in (got / log).read_bytes(), f"{log} padded with NUL bytes"


def _wait_for(p: subprocess.Popen, cond, what: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if p.poll() is not None:
            _, err = p.communicate()
            raise AssertionError(f"process ended (rc {p.returncode}) before {what}:\n{err[-3000:]}")
        if time.monotonic() > end:
            p.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


def _lock_pid(run: Path) -> int | None:
    try:
        return json.loads((run / ".lock").read_text())["pid"]
    except (OSError, ValueError, KeyError):
        return None


def _in_use_line(run: Path, pid: int) -> str:
    return f"run {run} is in use by PID {pid} on {socket.gethostname()} since "


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """One uninterrupted search + retrain; every case copies it (or compares with it)."""
    cwd = tmp_path_factory.mktemp("reference")
    r = _run([*SEARCH, "--out", "ref"], cwd)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not (cwd / "ref" / ".lock").exists(), "the lock file outlived the command"
    return cwd / "ref"


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory) -> Path:
    """The same search killed (SIGKILL) in its 12th checkpoint write (in epoch 1): checkpoint.pt is the 11th
    save, .prev the 10th, the logs hold rows past .prev's, and the dead process's lock file is left behind."""
    cwd = tmp_path_factory.mktemp("interrupted")
    r = _run([*SEARCH, "--out", "run"], cwd, ENAS_TEST_CRASH_AT="write:12")
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    run = cwd / "run"
    now, prev = checkpoint.load(run / "checkpoint.pt"), checkpoint.load(run / "checkpoint.pt.prev")
    assert (now["epoch"], prev["epoch"]) == (1, 1) and now["global_step"] == prev["global_step"] + 1
    return run


@pytest.fixture(scope="module")
def trained(tmp_path_factory, reference) -> Path:
    """A training of the reference's architecture with the reference's retrain config: another run (own run id)
    whose checkpoint is valid and of the same shape as ``reference/final``'s."""
    cwd = tmp_path_factory.mktemp("trained")
    r = _run(["train", str(reference / "best_arch.json"), *TINY, "search.checkpoint_every=1", "--out", "tr"], cwd)
    assert r.returncode == 0, r.stderr[-3000:]
    return cwd / "tr"


# ------------------------------------------------------------------------------------- ways to damage a copy
def _foreign_checkpoint(source: str, keep_prev: bool):
    """Another run's checkpoint.pt (same config and shape, valid header and checksum) copied into the run."""
    def prepare(run: Path, src: dict) -> None:
        shutil.copy(src[source] / "checkpoint.pt", run / "checkpoint.pt")
        if not keep_prev:
            (run / "checkpoint.pt.prev").unlink()
    return prepare


def _foreign_training_checkpoint(run: Path, src: dict) -> None:
    shutil.copy(src["trained"] / "checkpoint.pt", run / "final" / "checkpoint.pt")
    (run / "final" / "checkpoint.pt.prev").unlink()


def _shorter_log(run: Path, src: dict) -> None:
    data = (run / "metrics.jsonl").read_bytes()
    (run / "metrics.jsonl").write_bytes(data[:len(data) - 40])


def _payload_without_keys(run: Path, src: dict) -> None:
    """Valid header, checksum and identity, but not a search payload; .prev removed."""
    state = checkpoint.load(run / "checkpoint.pt")
    state = {"kind": "search", "identity": state["identity"], "model": state["model"]}
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    (run / "checkpoint.pt").write_bytes(checkpoint.MAGIC + b" %d %s\n" % (
        checkpoint.FORMAT, hashlib.sha256(payload).hexdigest().encode()) + payload)
    (run / "checkpoint.pt.prev").unlink()


def _edited_config(run: Path, src: dict) -> None:
    cfg = json.loads((run / "config.json").read_text())
    cfg["shared"]["lr_max"] = 0.5  # the checkpoint was written with another configuration
    (run / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")


def _config_file(tree: dict):
    def prepare(run: Path, src: dict) -> None:
        (run.parent / "cfg.json").write_text(json.dumps(tree))
    return prepare


def _other_run(run: Path, src: dict) -> None:
    shutil.copytree(src["reference"], run.parent / "other")


# ------------------------------------------------------------------------------------------------ the table
# (id, argv, exit status, a distinctive part of the one line, the run copy it needs: None, "finished" (the
# reference) or "interrupted", a preparation of that copy). {run} = the copy, {new} = a directory that must not
# be created, {cwd} = the working directory (everything in it must be byte-identical afterwards).
NEW = ["--out", "{new}"]
CASES = [
    # 4. values that passed the config check and crashed later, or meant nothing
    ("cfg-controller-lr", [*SEARCH, *NEW, "controller.lr=-1"], 2, "controller.lr: must be > 0, got -1.0", None, None),
    ("cfg-shared-weight-decay", [*SEARCH, *NEW, "shared.weight_decay=-1"], 2, "shared.weight_decay: must be >= 0",
     None, None),
    ("cfg-train-weight-decay", ["train", "{ref}/best_arch.json", *TINY, *NEW, "train.weight_decay=-0.5"], 2,
     "train.weight_decay: must be >= 0, got -0.5", None, None),
    ("cfg-beta1", [*SEARCH, *NEW, "controller.beta1=1.5"], 2, "controller.beta1: must be in [0, 1), got 1.5", None,
     None),
    ("cfg-stem-multiplier", [*SEARCH, *NEW, "net.stem_multiplier=0"], 2, "net.stem_multiplier: must be in [1, 16]",
     None, None),
    ("cfg-rnn-bptt", [*SEARCH, "--space", "rnn", *NEW, "data.bptt=0"], 2, "data.bptt: must be in [1, 100000], got 0",
     None, None),
    ("cfg-rnn-hidden", [*SEARCH, "--space", "rnn", *NEW, "net.hidden_size=0"], 2, "net.hidden_size: must be in [1, ",
     None, None),
    ("cfg-seed-negative", [*SEARCH, *NEW, "--seed", "-5"], 2, "run.seed: must be in [0, ", None, None),
    ("cfg-seed-huge", [*SEARCH, *NEW, "--seed", "99999999999999999999999"], 2,
     "run.seed: must be in [0, 9007199254740992], got 99999999999999999999999", None, None),
    ("cfg-channels", [*SEARCH, *NEW, "net.channels=100000"], 2, "net.channels: must be in [1, 4096], got 100000",
     None, None),
    ("cfg-final-channels", [*SEARCH, *NEW, "final_net.channels=1000000"], 2,
     "final_net.channels: must be in [1, 4096]", None, None),
    ("cfg-num-nodes", [*SEARCH, *NEW, "space_cfg.num_nodes=100000"], 2, "space_cfg.num_nodes: must be in [1, 64]",
     None, None),
    ("cfg-int-arabic-digits", [*SEARCH, *NEW, "run.seed=\u0663"], 2,
     "run.seed: expected an integer written with the digits 0-9, got '\u0663'", None, None),
    ("cfg-int-plus", [*SEARCH, *NEW, "shared.epochs=+0"], 2, "shared.epochs: expected an integer written with", None,
     None),
    ("cfg-int-underscore", [*SEARCH, *NEW, "run.seed=0_0"], 2, "run.seed: expected an integer written with", None,
     None),
    ("cfg-flag-arabic-digits", [*SEARCH, *NEW, "--seed", "\u0663"], 2, "argument --seed: invalid int value", None,
     None),
    ("cfg-file-arabic-digits", [*SEARCH, *NEW, "--config", "{cwd}/cfg.json"], 2,
     "shared.batch_size: expected an integer written with the digits 0-9", None,
     _config_file({"shared": {"batch_size": "\u0661\u0666"}})),
    ("cfg-pad", [*SEARCH, *NEW, "data.pad=-7"], 2, "data.pad: must be -1 (image_size // 8) or in [0, 64], got -7",
     None, None),
    ("cfg-valid-one-image", [*SEARCH, *NEW, "data.valid=1.0"], 2, "data.valid: a fraction in [0, 1) or a whole count",
     None, None),
    ("cfg-temperature", [*SEARCH, *NEW, "controller.temperature=-5"], 2, "controller.temperature: must be >= 0",
     None, None),
    ("cfg-cutout-larger-than-images", [*SEARCH, *NEW, "train.cutout=1000"], 2,
     "train.cutout: 1000 is larger than the 8x8 images", None, None),
    ("cfg-lr-min-above-max", [*SEARCH, *NEW, "shared.lr_min=1", "shared.lr_max=0.1"], 2,
     "shared.lr_min: must be <= shared.lr_max (0.1), got 1.0", None, None),
    # 1. resumes that damaged the run
    ("resume-foreign-checkpoint-no-prev", ["search", "--resume", "{run}"], 2,
     "checkpoint.pt: written by another run (", "interrupted", _foreign_checkpoint("reference", keep_prev=False)),
    ("resume-foreign-checkpoint-finished-run", ["search", "--resume", "{run}"], 2, "written by another run",
     "finished", _foreign_checkpoint("interrupted", keep_prev=False)),
    ("resume-log-shorter-than-recorded", ["search", "--resume", "{run}"], 2,
     "resume {run}: metrics.jsonl has ", "finished", _shorter_log),
    ("resume-payload-incomplete", ["search", "--resume", "{run}"], 2,
     "incomplete search checkpoint (missing controller, opt,", "interrupted", _payload_without_keys),
    ("resume-config-edited", ["search", "--resume", "{run}"], 2,
     "written with another configuration than this run's config.json", "interrupted", _edited_config),
    ("resume-foreign-training-checkpoint", ["train", "--resume", "{run}/final"], 2, "written by another run",
     "finished", _foreign_training_checkpoint),
    # 3. commands that overwrote other runs
    ("export-into-other-run", ["export", "{run}", "--out", "{cwd}/other", "--format", "json"], 2,
     "is a run directory; choose another --out (or pass --force", "finished", _other_run),
    ("export-inside-other-run", ["export", "{run}", "--out", "{cwd}/other/final/x", "--format", "json"], 2,
     "is inside the run directory {cwd}/other", "finished", _other_run),
    ("export-into-own-final", ["export", "{run}", "--out", "{run}/final", "--format", "json"], 2,
     "final: is a run directory", "finished", None),
    ("export-onto-a-file", ["export", "{run}", "--out", "{run}/result.json", "--format", "json"], 2,
     "result.json: exists and is not a directory", "finished", None),
    ("compare-into-finished-run", ["compare", "--seeds", "0", *TINY, "--out", "{run}"], 2,
     "is a run directory", "finished", None),
    ("show-onto-result-json", ["show", "{run}", *TINY, "--format", "svg", "-o", "{run}/result.json"], 2,
     "result.json: exists; pass --force to replace it", "finished", None),
    ("show-onto-a-directory", ["show", "{run}", *TINY, "--format", "svg", "-o", "{run}/final"], 2,
     "final: is a directory; give a file name", "finished", None),
    ("search-out-finished-run", [*SEARCH, "--out", "{run}"], 2, "directory is not empty; pass --resume", "finished",
     None),
]


def test_table_is_complete():
    kinds = {c[0].split("-")[0] for c in CASES}
    assert {"cfg", "resume", "export", "compare", "show"} <= kinds
    assert len({c[0] for c in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize("case_id, argv, status, message, needs, prepare", CASES, ids=[c[0] for c in CASES])
def test_bad_input_keeps_the_promise(case_id, argv, status, message, needs, prepare, reference, interrupted, trained,
                                     tmp_path):
    run = tmp_path / "run"
    if needs is not None:
        shutil.copytree(reference if needs == "finished" else interrupted, run)
        (run / ".lock").unlink(missing_ok=True)  # the killed run's stale lock file (tested on its own below)
    if prepare is not None:
        prepare(run, {"reference": reference, "interrupted": interrupted, "trained": trained})
    where = {"run": run, "new": tmp_path / "new_run", "cwd": tmp_path, "ref": reference}
    argv = [a.format(**where) for a in argv]
    message = message.format(**where)
    before = _digest(tmp_path)
    r = _run(argv, tmp_path)
    assert r.returncode == status, r.stderr[-3000:]
    line = _one_error_line(r)
    assert message in line, line
    assert _digest(tmp_path) == before, "a failed command changed, created or removed a file"


# ---------------------------------------------------------------------------------- resume: the .prev fallback
def test_foreign_checkpoint_falls_back_to_prev_and_ends_exactly(reference, interrupted, tmp_path):
    """Another run's valid checkpoint copied into an interrupted run: refused by identity with one warning, the
    run's own checkpoint.pt.prev is used and the resumed run ends as the uninterrupted one (no NUL, no cut row).
    Without .prev the same resume is refused and the directory stays byte-identical (the table above)."""
    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    shutil.copy(reference / "checkpoint.pt", run / "checkpoint.pt")
    r = _run(["search", "--resume", str(run), "--quiet"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    warnings = [line for line in r.stderr.splitlines() if "checkpoint" in line]
    assert len(warnings) == 1 and "written by another run" in warnings[0], r.stderr
    assert "using the previous checkpoint checkpoint.pt.prev" in warnings[0]
    assert "Traceback" not in r.stderr
    assert_same_search(reference, run)
    assert not (run / ".lock").exists()


def test_run_made_before_run_ids_still_resumes(reference, interrupted, tmp_path):
    """A run directory without run.json whose checkpoints carry no identity (as written before this change)
    resumes, and ends exactly as the uninterrupted run."""
    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    (run / "run.json").unlink()
    for name in ("checkpoint.pt", "checkpoint.pt.prev"):
        state = checkpoint.load(run / name)
        del state["identity"]
        buf = io.BytesIO()
        torch.save(state, buf)
        payload = buf.getvalue()
        (run / name).write_bytes(checkpoint.MAGIC + b" %d %s\n" % (
            checkpoint.FORMAT, hashlib.sha256(payload).hexdigest().encode()) + payload)
    r = _run(["search", "--resume", str(run), "--quiet"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "previous checkpoint" not in r.stderr  # its own newest checkpoint was good
    assert_same_search(reference, run)


# ------------------------------------------------------------------------------------------- the run lock
def test_second_search_on_the_same_directory_is_refused(reference, tmp_path):
    """Two `enas search --out D` at once: the second (and a resume, a report) exits 2 with the "in use" line
    while the first holds D; the first finishes normally with the rows of a single run."""
    run = tmp_path / "run"
    first = _start([*SEARCH, "--out", str(run)], tmp_path)
    try:
        _wait_for(first, lambda: _lock_pid(run) == first.pid and (run / "config.json").exists(),
                  "the first search's lock and config.json")
        first.send_signal(signal.SIGSTOP)  # it keeps the lock; the others meet it for certain
        for argv in ([*SEARCH, "--out", str(run)], ["search", "--resume", str(run)], ["report", str(run)]):
            r = _run(argv, tmp_path)
            assert r.returncode == 2, (argv, r.stderr[-3000:])
            assert _in_use_line(run, first.pid) in _one_error_line(r), (argv, r.stderr)
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=240)
    assert first.returncode == 0, err[-3000:]
    assert_same_search(reference, run)  # one run's rows: nothing interleaved, nothing lost
    assert not (run / ".lock").exists()


def test_two_resumes_at_once(reference, interrupted, tmp_path):
    """A resume while another resume of the same run is running: refused with the holder's PID; the first ends
    exactly as the uninterrupted run. Its stale lock file (of the killed process) was taken over and rewritten."""
    run = tmp_path / "run"
    shutil.copytree(interrupted, run)
    stale = _lock_pid(run)
    assert stale is not None, "the killed search left its lock file (the case of a stale lock)"
    first = _start(["search", "--resume", str(run), "--quiet"], tmp_path)
    try:
        _wait_for(first, lambda: _lock_pid(run) == first.pid, "the resume to take over the stale lock")
        first.send_signal(signal.SIGSTOP)
        r = _run(["search", "--resume", str(run), "--quiet"], tmp_path)
        assert r.returncode == 2, r.stderr[-3000:]
        line = _one_error_line(r)
        assert _in_use_line(run, first.pid) in line and f"PID {stale} " not in line, line
        r = _run(["rank", str(run), "--archs", "2"], tmp_path)  # another writer into the run
        assert r.returncode == 2 and _in_use_line(run, first.pid) in _one_error_line(r), r.stderr[-3000:]
    finally:
        first.send_signal(signal.SIGCONT)
    out, err = first.communicate(timeout=240)
    assert first.returncode == 0, err[-3000:]
    assert_same_search(reference, run)
    assert not (run / ".lock").exists()


def test_stale_lock_of_a_killed_search_is_taken_over(tmp_path):
    """A search killed (SIGKILL) while holding the lock: a new command takes the lock over at once and rewrites
    the holder line; the lock file is gone when it ends."""
    run = tmp_path / "run"
    first = _start([*SEARCH, "--out", str(run)], tmp_path)
    _wait_for(first, lambda: (run / "checkpoint.pt").exists(), "the first checkpoint")
    first.kill()
    first.communicate()
    assert _lock_pid(run) == first.pid  # left behind, unlocked by the kernel
    second = _start(["search", "--resume", str(run), "--quiet"], tmp_path)
    try:
        _wait_for(second, lambda: _lock_pid(run) == second.pid, "the takeover of the stale lock")
        second.send_signal(signal.SIGSTOP)
        r = _run(["search", "--resume", str(run)], tmp_path)
        assert r.returncode == 2 and _in_use_line(run, second.pid) in _one_error_line(r), r.stderr[-3000:]
    finally:
        second.send_signal(signal.SIGCONT)
    out, err = second.communicate(timeout=240)
    assert second.returncode == 0, err[-3000:]
    assert not (run / ".lock").exists()


# --------------------------------------------------------------------------------------- outputs, --force
def test_force_replaces_a_file_and_a_failed_draw_leaves_nothing(reference, tmp_path):
    target = tmp_path / "cell.svg"
    target.write_text("old")
    r = _run(["show", str(reference), *TINY, "--format", "svg", "-o", str(target), "--force"], tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert target.read_text().lstrip().startswith("<")
    # png needs Graphviz; when it is missing the command fails and removes the directories it made
    r = _run(["show", str(reference), *TINY, "--format", "png", "-o", str(tmp_path / "a" / "b" / "cell.png")],
             tmp_path)
    if r.returncode != 0:
        _one_error_line(r)
        assert not (tmp_path / "a").exists()


# ------------------------------------------------------------------------------------ one edge for errors
_RAISE = ("import sys\nfrom enas import cli\n"
          "def boom(args):\n    raise {exc}\n"
          "cli.HANDLERS['presets'] = boom\nsys.exit(cli.main(['presets']))\n")


def _raising(exc: str, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _RAISE.format(exc=exc)], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=120)


def test_internal_error_is_one_line_naming_a_saved_traceback(tmp_path):
    r = _raising("TypeError('unsupported operand')", tmp_path)
    assert r.returncode == 1, r.stderr
    line = _one_error_line(r)
    assert line.startswith("error: internal error (TypeError: unsupported operand); the traceback is in ")
    path = Path(line.split("the traceback is in ", 1)[1].split(" (please report it)")[0])
    try:
        text = path.read_text()
        assert "Traceback (most recent call last)" in text and "TypeError: unsupported operand" in text
    finally:
        path.unlink(missing_ok=True)


def test_permission_error_is_a_user_error(tmp_path):
    r = _raising("PermissionError(13, 'Permission denied', '/data/cifar')", tmp_path)
    assert r.returncode == 2, r.stderr
    assert _one_error_line(r) == "error: Permission denied (/data/cifar)"
