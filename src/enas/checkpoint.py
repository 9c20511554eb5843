"""Crash-safe checkpoints.

File layout: one header line ``ENAS-CKPT <format> <sha256-of-payload>\\n`` followed by the payload written by
``torch.save``. Saving writes a temporary file in the same directory, fsyncs it, moves the current checkpoint
to ``<name>.prev`` and renames the temporary file into place, so a crash at any point leaves at least one
complete checkpoint. Loading verifies the checksum and unpickles with ``torch.load(weights_only=True)``: only
tensors, primitives and containers are accepted, so a file crafted to run code is refused.

A checkpoint saved in a run directory carries the run's identity (``identity``: the run id of its
``run.json``, the space and a hash of the run-affecting part of its ``config.json``). ``load_run_state`` checks
the identity, the payload's shape and the logs' recorded sizes before a resume may touch anything, and falls
back to ``<name>.prev`` when the newest checkpoint does not fit.
"""

from __future__ import annotations

import hashlib
import json
import logging
import io
import os
from pathlib import Path

import torch

from .errors import EnasError

MAGIC = b"ENAS-CKPT"
FORMAT = 1
CRASH_ENV = "ENAS_TEST_CRASH_AT"  # tests only: "STAGE:N" kills this process at the N-th save (see _crash_point)
_saves = [0]


class CheckpointError(EnasError, RuntimeError):
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
    ident = run_identity(path.parent)
    if ident is not None and IDENTITY not in state:
        state = {**state, IDENTITY: ident}
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


# ------------------------------------------------------------------------------------------------ identity
IDENTITY = "identity"
# settings that may differ between the run and its resume (where it runs, what it prints): not in the hash
_VOLATILE = {"run": ("device", "progress", "report")}


def config_hash(tree: object) -> str | None:
    """sha256 of the run-affecting part of a config tree (``config.json``), or None if it is not one."""
    if not isinstance(tree, dict):
        return None
    t = {k: (dict(v) if isinstance(v, dict) else v) for k, v in tree.items()}
    for sec, keys in _VOLATILE.items():
        if isinstance(t.get(sec), dict):
            for k in keys:
                t[sec].pop(k, None)
    return hashlib.sha256(json.dumps(t, sort_keys=True, default=str).encode()).hexdigest()


def _read_tree(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def run_identity(run_dir: str | Path) -> dict | None:
    """The identity that checkpoints saved in ``run_dir`` carry, or None outside a run directory."""
    from .rundir import RUN_FILE, run_id
    run_dir = Path(run_dir)
    tree = _read_tree(run_dir / "config.json")
    rid = run_id(run_dir) if (run_dir / RUN_FILE).exists() else None
    if rid is None and not isinstance(tree, dict):
        return None
    return {"run_id": rid, "space": tree.get("space") if isinstance(tree, dict) else None,
            "config_sha256": config_hash(tree)}


# required payload entries per checkpoint kind (type or tuple of types); optional ones are checked when present
_INT, _NUM = (int,), (int, float)
_SHAPE = {
    "search": {"model": dict, "controller": dict, "opt": dict, "ctrl_opt": (dict, type(None)),
               "baseline": torch.Tensor, "epoch": _INT, "step": _INT, "global_step": _INT, "phase": str,
               "epoch_actions": (torch.Tensor, type(None)), "task": dict, "rng": dict, "sums": dict,
               "best": (dict, type(None)), "metrics_size": _INT, "elapsed": _NUM},
    "train": {"model": dict, "opt": dict, "task": dict, "rng": dict, "epoch": _INT, "step": _INT,
              "global_step": _INT, "sums": dict, "metrics_size": _INT, "elapsed": _NUM},
    "train-lm": {"metrics_size": _INT},
}
_OPTIONAL = {"search": {"archs_size": _INT, "config": dict, "guard": dict}, "train": {"done": bool, "guard": dict}}
_PHASES = ("shared", "controller", "end", "done")
# the append-only logs of each kind: file in the run directory -> the payload entry with its recorded size
LOGS = {"search": {"metrics.jsonl": "metrics_size", "archs.jsonl": "archs_size"},
        "train": {"metrics.jsonl": "metrics_size"}, "train-lm": {"metrics.jsonl": "metrics_size"}}


def _type_ok(v: object, tp) -> bool:
    tps = tp if isinstance(tp, tuple) else (tp,)
    if isinstance(v, bool) and bool not in tps:
        return False
    return isinstance(v, tps)


def _tname(tp) -> str:
    tps = tp if isinstance(tp, tuple) else (tp,)
    return " or ".join("None" if t is type(None) else t.__name__ for t in tps)


def shape_problem(state: dict, kind: str) -> str | None:
    """Why ``state`` is not a well-formed checkpoint payload of ``kind``, or None."""
    want = _SHAPE.get(kind, {})
    missing = [k for k in want if k not in state]
    if missing:
        return f"incomplete {kind} checkpoint (missing {', '.join(missing)})"
    checks = dict(want)
    checks.update({k: t for k, t in _OPTIONAL.get(kind, {}).items() if k in state})
    for k, tp in checks.items():
        if not _type_ok(state[k], tp):
            return f"malformed {kind} checkpoint ({k} is {type(state[k]).__name__}, expected {_tname(tp)})"
        if tp is _INT and state[k] < 0:
            return f"malformed {kind} checkpoint ({k} = {state[k]} is negative)"
    for k in ("model", "controller"):
        if k in want and not all(isinstance(v, torch.Tensor) for v in state[k].values()):
            return f"malformed {kind} checkpoint ({k} holds values other than tensors)"
    if kind == "search" and state["phase"] not in _PHASES:
        return f"malformed search checkpoint (phase {state['phase']!r})"
    return None


def identity_problem(state: dict, run_dir: Path) -> str | None:
    """Why ``state`` does not belong to the run in ``run_dir``, or None. Runs made before run ids (no
    ``run.json``) accept checkpoints without one; their search checkpoints are matched on the saved config."""
    here = run_identity(run_dir) or {}
    ident = state.get(IDENTITY)
    if ident is not None and not isinstance(ident, dict):
        return "malformed identity"
    ident = ident or {}
    mine, theirs = here.get("run_id"), ident.get("run_id")
    if mine != theirs:
        if theirs is None:
            return f"not written by this run (it carries no run id; this run is {mine})"
        if mine is None:
            return f"written by another run ({theirs}; this run directory has no {_run_file()})"
        return f"written by another run ({theirs}; this run is {mine})"
    if ident.get("space") and here.get("space") and ident["space"] != here["space"]:
        return f"for the {ident['space']} space, this run is {here['space']}"
    theirs_cfg, mine_cfg = ident.get("config_sha256"), here.get("config_sha256")
    if theirs_cfg and mine_cfg and theirs_cfg != mine_cfg:
        return "written with another configuration than this run's config.json"
    if not ident and isinstance(state.get("config"), dict) and _other_config(state["config"], run_dir):
        return "written with another configuration than this run's config.json"
    return None


def _run_file() -> str:
    from .rundir import RUN_FILE
    return RUN_FILE


def _other_config(saved: dict, run_dir: Path) -> bool:
    """Whether a pre-identity search checkpoint's own config differs from this run's config.json. Both are read
    through ``config.from_dict`` (settings added since take their defaults on both sides); when either does not
    read, there is nothing to compare."""
    from . import config as C
    try:
        here = config_hash(C.to_dict(C.from_dict(_read_tree(run_dir / "config.json"))))
        theirs = config_hash(C.to_dict(C.from_dict(saved)))
    except Exception:  # noqa: BLE001 - not comparable
        return False
    return here != theirs


def load_run_state(path: str | Path, kind: str, what: str,
                   map_location: str | torch.device = "cpu") -> dict | None:
    """The state of a run's checkpoint at ``path`` (or its ``.prev``), or None when the run has none yet.

    A checkpoint is used only if it loads (header, checksum, safe unpickler), is of ``kind``, belongs to this
    run (``identity_problem``), has the shape of a ``kind`` payload and records log sizes that fit the logs on
    disk; otherwise ``.prev`` is tried (a warning says why). A log shorter than the usable checkpoint recorded
    is an error: logs are cut back, never padded. Nothing is written here.
    """
    from .rundir import log_size_problem
    path = Path(path)
    prev = previous(path)
    if not path.exists() and not prev.exists():
        return None
    run_dir = path.parent
    problems: list[str] = []
    for cand in (path, prev):
        if cand is prev and not prev.exists():
            problems.append(f"no previous checkpoint ({prev.name}) to fall back on")
            break
        try:
            state = load(cand, map_location)
        except CheckpointError as e:
            problems.append(str(e) if cand is path else f"the previous checkpoint is unusable too ({e})")
            continue
        problem = None
        if not isinstance(state, dict) or state.get("kind") != kind:
            problem = f"not a {what} checkpoint"
        problem = problem or identity_problem(state, run_dir) or shape_problem(state, kind)
        if problem is None:
            for name, key in LOGS.get(kind, {}).items():
                if key in state and not _at_row_end(run_dir / name, state[key]):
                    problem = f"its recorded size of {name} ({state[key]}) is not the end of a row there"
                    break
        if problem is not None:
            problems.append(f"{cand}: {problem}" if cand is path else
                            f"the previous checkpoint is unusable too ({cand}: {problem})")
            continue
        for name, key in LOGS.get(kind, {}).items():
            short = log_size_problem(run_dir / name, state[key]) if key in state else None
            if short:
                raise CheckpointError(f"resume {run_dir}: {short} (checkpoint {cand.name})")
        if cand is prev:
            logging.getLogger("enas").warning("%s; using the previous checkpoint %s", "; ".join(problems), prev.name)
        return state
    raise CheckpointError("; ".join(problems))


def _at_row_end(path: Path, size: int) -> bool:
    """Whether ``size`` bytes of the log at ``path`` end a row (or the log is shorter: reported separately)."""
    if size == 0:
        return True
    try:
        with open(path, "rb") as f:
            f.seek(size - 1)
            last = f.read(1)
    except FileNotFoundError:
        return True
    return last in (b"\n", b"")


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
