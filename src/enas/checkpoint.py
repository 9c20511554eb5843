"""Crash-safe checkpoints.

File layout: one header line ``ENAS-CKPT <format> <sha256-of-payload>\\n`` followed by the payload written by
``torch.save``. Saving writes a temporary file in the same directory, fsyncs it, moves the current checkpoint
to ``<name>.prev`` and renames the temporary file into place, so a crash at any point leaves at least one
complete checkpoint. Loading verifies the checksum and unpickles with ``torch.load(weights_only=True)``: only
tensors, primitives and containers are accepted, so a file crafted to run code is refused.
"""

from __future__ import annotations

import hashlib
import logging
import io
import os
from pathlib import Path

import torch

MAGIC = b"ENAS-CKPT"
FORMAT = 1
CRASH_ENV = "ENAS_TEST_CRASH_AT"  # tests only: "STAGE:N" kills this process at the N-th save (see _crash_point)
_saves = [0]


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, corrupted, of another format or unsafe. The message says which."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _crash_point(stage: str) -> bool:
    """Test hook: with ``ENAS_TEST_CRASH_AT=STAGE:N`` the N-th save of this process SIGKILLs itself at STAGE
    (``write``: half the temporary file written; ``tmp``: temporary file complete, nothing renamed; ``swap``:
    the old checkpoint moved to ``.prev``, the new one not yet renamed). Unset, it costs one dict lookup."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return False
    want, _, n = spec.partition(":")
    return want == stage and str(_saves[0]) == n


def _die() -> None:
    import signal
    os.kill(os.getpid(), signal.SIGKILL)


def save(state: dict, path: str | Path, *, keep_previous: bool = True) -> None:
    path = Path(path)
    _saves[0] += 1
    buf = io.BytesIO()
    torch.save(state, buf)
    payload = buf.getvalue()
    header = MAGIC + b" %d %s\n" % (FORMAT, hashlib.sha256(payload).hexdigest().encode())
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(header)
        if _crash_point("write"):
            f.write(payload[:len(payload) // 2])
            f.flush()
            os.fsync(f.fileno())
            _die()
        f.write(payload)
        f.flush()
        os.fsync(f.fileno())
    if _crash_point("tmp"):
        _die()
    if keep_previous and path.exists():
        os.replace(path, previous(path))
        if _crash_point("swap"):
            _die()
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def previous(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".prev")


def load(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path}: not found") from None
    except OSError as e:
        raise CheckpointError(f"checkpoint {path}: cannot read ({e.strerror})") from None
    nl = raw.find(b"\n", 0, 200)
    if not raw.startswith(MAGIC) or nl < 0:
        raise CheckpointError(f"checkpoint {path}: not an enas checkpoint (missing header)")
    parts = raw[:nl].split()
    if len(parts) != 3:
        raise CheckpointError(f"checkpoint {path}: malformed header")
    try:
        fmt = int(parts[1])
    except ValueError:
        raise CheckpointError(f"checkpoint {path}: malformed header") from None
    if fmt != FORMAT:
        raise CheckpointError(f"checkpoint {path}: format version {fmt}, this enas reads version {FORMAT}")
    payload = raw[nl + 1:]
    if hashlib.sha256(payload).hexdigest().encode() != parts[2]:
        raise CheckpointError(f"checkpoint {path}: checksum mismatch (truncated or corrupted file)")
    try:
        return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - the unpickler raises many kinds
        raise CheckpointError(f"checkpoint {path}: refused by the safe loader (it holds objects other than "
                              f"tensors and plain data: {_reason(e)}); it was not loaded") from None


def _reason(e: Exception) -> str:
    """The informative line of the unpickler's message (which global was refused), not its boilerplate."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()] or [type(e).__name__]
    hits = [line for line in lines if "global" in line.lower() and not line.startswith("Weights only load")]
    return (hits or lines)[0][:200]


def load_latest(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[dict, Path, str | None]:
    """Load ``path``; if it is bad or missing, fall back to ``path.prev``. Returns (state, used, warning)."""
    path = Path(path)
    try:
        return load(path, map_location), path, None
    except CheckpointError as first:
        prev = previous(path)
        if not prev.exists():
            raise CheckpointError(f"{first}; no previous checkpoint ({prev.name}) to fall back on") from None
        try:
            return load(prev, map_location), prev, f"{first}; using the previous checkpoint {prev.name}"
        except CheckpointError as second:
            raise CheckpointError(f"{first}; the previous checkpoint is unusable too ({second})") from None


def load_run_state(path: str | Path, kind: str, what: str,
                   map_location: str | torch.device = "cpu") -> dict | None:
    """The state of a run's checkpoint at ``path`` (or its ``.prev``), or None when the run has none yet.

    A fallback to ``.prev`` is logged; a checkpoint of another ``kind`` is refused with ``what`` in the message.
    """
    path = Path(path)
    if not path.exists() and not previous(path).exists():
        return None
    state, used, warning = load_latest(path, map_location)
    if warning:
        logging.getLogger("enas").warning(warning)
    if state.get("kind") != kind:
        raise CheckpointError(f"{used}: not a {what} checkpoint")
    return state


def rng_state(generators: dict[str, torch.Generator]) -> dict:
    state = {name: g.get_state() for name, g in generators.items()}
    state["torch"] = torch.get_rng_state()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict, generators: dict[str, torch.Generator]) -> None:
    for name, g in generators.items():
        g.set_state(state[name].cpu() if g.device.type == "cpu" else state[name].cpu())
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
