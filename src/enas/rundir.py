"""Run directories: JSON files written atomically, metrics as JSON lines, the stop signal."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import time
from datetime import datetime
from pathlib import Path

log = logging.getLogger("enas")


class RunDirError(ValueError):
    pass


def new_run_dir(out: str | None, verb: str, space: str) -> Path:
    """Create a fresh run directory; refuse one that already holds a run (it is never touched)."""
    if out is None:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path("runs") / f"{verb}-{space}-{stamp}"
        k = 1
        while path.exists():
            path = Path("runs") / f"{verb}-{space}-{stamp}-{k}"
            k += 1
    else:
        path = Path(out)
    if path.exists() and not path.is_dir():
        raise RunDirError(f"--out {path}: exists and is not a directory")
    if path.exists() and any(path.iterdir()):
        raise RunDirError(f"--out {path}: directory is not empty; pass --resume {path} to continue that run, "
                          "or choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"--out {path}: cannot create ({e.strerror})") from None
    return path


def created_top(out: str | Path | None) -> Path | None:
    """Call before ``new_run_dir``: the top-most directory it will create for ``out`` (``runs/`` when ``out`` is
    None), or None if that directory and its parents exist already."""
    p = Path("runs") if out is None else Path(out)
    top = None
    for a in (p, *p.parents):
        if a.exists() or a == Path("."):
            break
        top = a
    return top


def discard_new_run_dir(path: Path, existed: bool, top: Path | None) -> None:
    """Undo ``new_run_dir`` after a command failed before its run began: remove what it created (``top`` from
    ``created_top``, else the run directory), or empty again the empty directory the user passed (``existed``;
    ``new_run_dir`` refuses any other)."""
    if top is not None or not existed:
        shutil.rmtree(top if top is not None else path, ignore_errors=True)
        return
    for child in Path(path).iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def truncate(path: Path, size: int) -> None:
    """Cut an append-only file back to ``size`` bytes (the size recorded in a checkpoint)."""
    if Path(path).exists():
        with open(path, "r+b") as f:
            f.truncate(size)


def write_json(path: Path, obj: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_json(path: Path) -> object:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise RunDirError(f"{path}: not found") from None
    except json.JSONDecodeError as e:
        raise RunDirError(f"{path}: invalid JSON at line {e.lineno} column {e.colno}") from None


class MetricsLog:
    """Append-only JSON lines. ``size`` is recorded in checkpoints; resuming truncates back to it, so a
    resumed run's file is identical to an uninterrupted run's (apart from wall-clock fields)."""

    def __init__(self, path: Path, truncate_to: int | None = None, tensorboard_dir: Path | None = None):
        self.path = path
        if truncate_to is not None:
            truncate(path, truncate_to)
        self.f = open(path, "ab")
        self.tb = None
        if tensorboard_dir is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
                self.tb = SummaryWriter(str(tensorboard_dir))
            except Exception:  # noqa: BLE001 - tensorboard is optional
                self.tb = None

    @property
    def size(self) -> int:
        self.f.flush()
        return self.f.tell()

    def write(self, row: dict) -> None:
        self.f.write((json.dumps(row) + "\n").encode())
        self.f.flush()
        if self.tb is not None:
            step = row.get("global_step", row.get("epoch", 0))
            for k, v in row.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("epoch", "step", "global_step"):
                    self.tb.add_scalar(f"{row.get('kind', 'metric')}/{k}", v, step)

    def close(self) -> None:
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        if self.tb is not None:
            self.tb.close()


def read_metrics(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


class Stopper:
    """Turns SIGINT/SIGTERM into a request to stop after the current step (checkpoint, then exit)."""

    def __init__(self) -> None:
        self.requested: str | None = None
        self._old: dict = {}

    def install(self) -> "Stopper":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass
        return self

    def _handle(self, signum, frame) -> None:  # noqa: ANN001
        if self.requested is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        log.warning("%s received: finishing the current step, then saving a checkpoint", self.requested)

    def __call__(self) -> bool:
        return self.requested is not None

    def restore(self) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Stopped(Exception):
    """Raised after a checkpoint was written because a stop was requested. The message says how to resume."""

    def __init__(self, run_dir: str | Path | None = None, verb: str = "search"):
        self.run_dir, self.verb = run_dir, verb
        super().__init__(f"stopped: checkpoint saved; continue with: enas {verb} --resume {run_dir or 'RUN_DIR'}")


class NonFiniteError(RuntimeError):
    """Training kept producing non-finite losses or gradients; no bad weights were saved."""


class Timer:
    def __init__(self, elapsed: float = 0.0):
        self.start = time.perf_counter() - elapsed

    def __call__(self) -> float:
        return time.perf_counter() - self.start
