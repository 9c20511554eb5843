"""Run directories: created fresh with an identity (``run.json``), locked while a command writes into them
(``.lock``), JSON files written atomically, metrics as JSON lines, the stop signal."""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import time
from datetime import datetime
from pathlib import Path

from .errors import EnasError

log = logging.getLogger("enas")

RUN_FILE = "run.json"  # {"run_id": random hex, ...}: written when the run directory is created
LOCK_FILE = ".lock"  # flock'ed by the one process writing into the run; holds its PID, host and start time
_BOOKKEEPING = (RUN_FILE, LOCK_FILE)  # a directory holding only these is still empty (no config.json yet)


class RunDirError(EnasError, ValueError):
    pass


class RunInUse(RunDirError):
    """Another live process holds the run directory's lock."""


# ------------------------------------------------------------------------------------------------- locks
# One exclusive advisory lock (fcntl.flock) per run: every command that writes into a run holds it for as long
# as it runs. The kernel drops it when the process dies (even by SIGKILL), so a lock file left behind by a dead
# process is simply taken over (and its holder line rewritten). A run directly inside a run (a search's final/)
# is covered by its parent run's lock. Under torchrun only rank 0 takes it.
_held: dict[str, tuple[int, Path, int]] = {}  # realpath of the locked run -> (fd, lock file, holder's PID)
_made_by_new_run_dir: dict[str, str] = {}  # realpath of a run directory new_run_dir created -> the lock it took


def run_root(path: str | Path) -> Path:
    """The run whose lock covers ``path``: ``path`` itself, or the run it lies directly in (a search's ``final/``
    and ``export/`` belong to the search; so does ``final/export``). Runs one level further down, such as the
    trainings in ``rank/archNNN`` or ``retrain/arch-i``, have locks of their own (they may run in parallel)."""
    root = Path(path)
    for _ in range(4):
        if root.parent == root or not (root.parent / "config.json").is_file():
            break
        root = root.parent
    return root


def _key(path: Path) -> str:
    return os.path.realpath(path)


def _not_main_rank() -> bool:
    """Under torchrun only rank 0 writes into a run directory, so only it locks (the others use scratch)."""
    return os.environ.get("RANK", "0").strip() not in ("", "0")


def _holder_line(fd: int) -> str:
    """Who holds the lock, from its file (retried briefly: a new holder writes it just after locking)."""
    for _ in range(50):
        try:
            raw = os.pread(fd, 4096, 0)
            info = json.loads(raw.decode("utf-8", "replace") or "null")
        except (OSError, ValueError):
            info = None
        if isinstance(info, dict) and "pid" in info:
            return f"PID {info.get('pid')} on {info.get('host', '?')} since {info.get('since', '?')}"
        time.sleep(0.02)
    return "another process"


def holds_lock(path: str | Path) -> bool:
    """Whether this process holds the lock that covers ``path``."""
    return _key(run_root(path)) in _held


def held_locks() -> set[str]:
    return set(_held)


def lock_run(path: str | Path) -> bool:
    """Take the exclusive lock of the run at ``path`` (of ``run_root(path)``) for this process; True if taken
    now, False if this process holds it already (or is not rank 0 under torchrun). Raises RunInUse, with the
    holder's PID, host and start time, when another live process holds it."""
    root = run_root(path)
    key = _key(root)
    if key in _held or _not_main_rank():
        return False
    lock = root / LOCK_FILE
    for _ in range(100):  # a holder that releases unlinks the file: retry on the new one
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise RunDirError(f"run {root}: cannot create its lock file {LOCK_FILE} ({e.strerror})") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_line(fd)
            os.close(fd)
            raise RunInUse(f"run {root} is in use by {holder}; wait for it to finish (or stop it) and try "
                           "again") from None
        except OSError as e:
            os.close(fd)
            raise RunDirError(f"run {root}: cannot lock {LOCK_FILE} ({e.strerror})") from None
        try:
            mine, now = os.fstat(fd), os.stat(lock)
            same = (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino)
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    else:
        raise RunDirError(f"run {root}: could not take its lock {LOCK_FILE}")
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "since": datetime.now().astimezone().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)  # a dead holder's line is replaced
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    _held[key] = (fd, lock, os.getpid())
    return True


def unlock_run(path: str | Path) -> None:
    """Release the lock that covers ``path`` if this process holds it (the lock file is removed)."""
    _release(_key(run_root(path)))


def _release(key: str) -> None:
    item = _held.pop(key, None)
    if item is None:
        return
    fd, lock, pid = item
    try:
        mine, now = os.fstat(fd), os.stat(lock)
        if pid == os.getpid() and (mine.st_dev, mine.st_ino) == (now.st_dev, now.st_ino):  # not in a fork
            os.unlink(lock)  # while still locked: a process that opened it meanwhile retries on a new file
    except OSError:
        pass
    os.close(fd)


def release_locks(keys: set[str] | None = None) -> None:
    """Release the locks in ``keys`` (from ``held_locks()``), or all that this process holds."""
    for key in list(_held if keys is None else keys):
        _release(key)


atexit.register(release_locks)


def _probe_in_use(path: Path) -> None:
    """Raise RunInUse if a live process holds the lock covering ``path`` (creates no file)."""
    root = run_root(path)
    if _key(root) in _held or _not_main_rank():
        return
    try:
        fd = os.open(root / LOCK_FILE, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder_line(fd)
        os.close(fd)
        raise RunInUse(f"run {root} is in use by {holder}; wait for it to finish (or stop it) and try again") \
            from None
    except OSError:
        pass
    os.close(fd)


# ------------------------------------------------------------------------------------------ run directories
def new_run_dir(out: str | None, verb: str, space: str) -> Path:
    """Create a fresh run directory, lock it (held until the process ends or ``unlock_run``) and give it an
    identity (``run.json``: a random run id that its checkpoints carry); refuse one that already holds a run
    (it is never touched) or that another process is writing into."""
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
    if path.is_dir() or path.parent.is_dir():
        _probe_in_use(path)
    if path.exists() and _has_content(path):
        raise RunDirError(f"--out {path}: directory is not empty; pass --resume {path} to continue that run, "
                          "or choose another --out")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise RunDirError(f"--out {path}: cannot create ({e.strerror})") from None
    if lock_run(path):
        _made_by_new_run_dir[_key(path)] = _key(run_root(path))
    if _has_content(path):  # another process filled it between the check above and the lock
        raise RunDirError(f"--out {path}: directory is not empty; pass --resume {path} to continue that run, "
                          "or choose another --out")
    try:
        write_json(path / RUN_FILE, {"format": 1, "run_id": secrets.token_hex(8), "verb": verb, "space": space,
                                     "created": datetime.now().astimezone().isoformat(timespec="seconds")})
    except OSError as e:
        raise RunDirError(f"--out {path}: cannot write {RUN_FILE} ({e.strerror})") from None
    return path


def _has_content(path: Path) -> bool:
    return any(p.name not in _BOOKKEEPING for p in path.iterdir())


def run_id(path: str | Path) -> str | None:
    """The run id of the run directory ``path`` (None for runs made before run ids, or no run)."""
    try:
        info = json.loads((Path(path) / RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    rid = info.get("run_id") if isinstance(info, dict) else None
    return rid if isinstance(rid, str) and rid else None


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
    ``new_run_dir`` refuses any other). The lock it took is released."""
    lock_key = _made_by_new_run_dir.pop(_key(path), None)
    if lock_key is not None:
        _release(lock_key)
    if top is not None or not existed:
        shutil.rmtree(top if top is not None else path, ignore_errors=True)
        return
    for child in Path(path).iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------- append-only logs
def log_size_problem(path: str | Path, size: int) -> str | None:
    """Why an append-only file cannot go back to ``size`` bytes (recorded in a checkpoint), or None.
    It must be at least that long (it is cut, never padded); a missing file counts as empty."""
    path = Path(path)
    try:
        have = path.stat().st_size
    except FileNotFoundError:
        have = 0
    if size > have:
        return (f"{path.name} has {have} bytes, fewer than the {size} its checkpoint recorded (rows were removed "
                "or the file replaced); nothing was changed")
    return None


def truncate(path: str | Path, size: int) -> None:
    """Cut an append-only file back to ``size`` bytes (the size recorded in a checkpoint). Never pads: a file
    shorter than ``size`` is a RunDirError (and is left as it is)."""
    problem = log_size_problem(path, size)
    if problem:
        raise RunDirError(f"{Path(path).parent}: {problem}")
    p = Path(path)
    if p.exists() and p.stat().st_size > size:
        with open(p, "r+b") as f:
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
    resumed run's file is identical to an uninterrupted run's (apart from wall-clock fields).

    Nothing is touched before the first use (``commit``, ``write`` or ``size``): a command that fails while
    it is still setting up leaves the file as it was. An existing file shorter than ``truncate_to`` is refused
    at once (RunDirError), never padded; a missing one starts empty."""

    def __init__(self, path: Path, truncate_to: int | None = None, tensorboard_dir: Path | None = None):
        self.path = Path(path)
        if truncate_to is not None and self.path.exists():
            problem = log_size_problem(self.path, truncate_to)
            if problem:
                raise RunDirError(f"{self.path.parent}: {problem}")
        self._truncate_to = truncate_to
        self._tb_dir = tensorboard_dir
        self.f = None
        self.tb = None

    def commit(self) -> "MetricsLog":
        """Apply the truncation and open the file (the first use does this too)."""
        if self.f is None:
            if self._truncate_to is not None and self.path.exists():
                truncate(self.path, self._truncate_to)
            self.f = open(self.path, "ab")
            if self._tb_dir is not None:
                try:
                    from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package
                    self.tb = SummaryWriter(str(self._tb_dir))
                except Exception:  # noqa: BLE001 - tensorboard is optional
                    self.tb = None
        return self

    @property
    def size(self) -> int:
        self.commit()
        self.f.flush()
        return self.f.tell()

    def write(self, row: dict) -> None:
        self.commit()
        self.f.write((json.dumps(row) + "\n").encode())
        self.f.flush()
        if self.tb is not None:
            step = row.get("global_step", row.get("epoch", 0))
            for k, v in row.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in ("epoch", "step", "global_step"):
                    self.tb.add_scalar(f"{row.get('kind', 'metric')}/{k}", v, step)

    def close(self) -> None:
        if self.f is None:
            return
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


class NonFiniteError(EnasError, RuntimeError):
    """Training kept producing non-finite losses or gradients; no bad weights were saved."""

    exit_code = 1  # the input was valid; the run failed


class Timer:
    def __init__(self, elapsed: float = 0.0):
        self.start = time.perf_counter() - elapsed

    def __call__(self) -> float:
        return time.perf_counter() - self.start
