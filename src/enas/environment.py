"""Where a run ran: machine, Python, torch, CUDA, device, threads, the package's git commit and the seed.

``environment(seed, device)`` is the ``"environment"`` entry of every run's ``result.json``; ``doctor_lines()`` is
what ``enas doctor`` prints (the same facts, plus which optional parts are available). Nothing here fails: a
fact that cannot be read is ``None``.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import socket
import subprocess
from pathlib import Path

import torch

from . import __version__

PACKAGE_DIR = Path(__file__).resolve().parent
OPTIONAL = (  # (name shown, module to find or program on the PATH, what it gives)
    ("graphviz", "dot", "enas show --format png, Graphviz layouts of the drawings"),
    ("tensorboard", "tensorboard", "TensorBoard event files next to metrics.jsonl"),
    ("onnx", "onnx", "enas export --format onnx"),
    ("onnxruntime", "onnxruntime", "the check of exported ONNX models"),
    ("ray", "ray", "enas search --engine ray, enas retrain"),
    ("matplotlib", "matplotlib", "PNG plots"),
)


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(PACKAGE_DIR), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_commit() -> dict | None:
    """``{"commit", "dirty"}`` of the checkout this package is imported from; None when it is not one (an
    installed wheel: a repository around site-packages is not asked)."""
    if _git("ls-files", "--error-unmatch", "__init__.py") is None:
        return None
    commit = _git("rev-parse", "HEAD")
    if commit is None:
        return None
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".")
    return {"commit": commit, "dirty": bool(status)}


def _cuda() -> dict:
    available = torch.cuda.is_available()
    out = {"cuda": torch.version.cuda, "cuda_available": available, "cudnn": None, "gpus": []}
    if available:
        try:
            out["cudnn"] = torch.backends.cudnn.version()
            out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception:  # noqa: BLE001 - a driver problem: the facts that were read stay
            pass
    return out


def environment(seed: int | None = None, device: object = None) -> dict:
    """The facts a run records in ``result.json["environment"]`` (plain JSON values)."""
    git = git_commit()
    return {"enas": __version__, "python": platform.python_version(), "platform": platform.platform(),
            "machine": platform.machine(), "hostname": socket.gethostname(), "cpu_count": os.cpu_count(),
            "torch": torch.__version__, **_cuda(), "device": None if device is None else str(device),
            "torch_threads": torch.get_num_threads(), "git_commit": git["commit"] if git else None,
            "git_dirty": git["dirty"] if git else None, "seed": seed}


def optional_parts() -> dict[str, bool]:
    """Which optional parts this installation can use (name -> available)."""
    found = {}
    for name, what, _ in OPTIONAL:
        found[name] = shutil.which(what) is not None if name == "graphviz" else \
            importlib.util.find_spec(what) is not None
    return found


def doctor_lines() -> list[str]:
    """What ``enas doctor`` prints: one fact per line."""
    from .build import resolve_device
    env = environment()
    try:
        device = str(resolve_device("auto"))
    except Exception as e:  # noqa: BLE001
        device = f"unavailable ({e})"
    lines = [f"enas {env['enas']}" + (f" (git {env['git_commit'][:12]}{', modified' if env['git_dirty'] else ''})"
                                      if env["git_commit"] else ""),
             f"python {env['python']} on {env['platform']} ({env['machine']}, {env['cpu_count']} CPUs)",
             f"torch {env['torch']}, {env['torch_threads']} threads"
             + (f" (OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})" if "OMP_NUM_THREADS" in os.environ else ""),
             f"CUDA: {'built for ' + env['cuda'] if env['cuda'] else 'a CPU-only build of torch'}; "
             + (f"{len(env['gpus'])} GPU(s): {', '.join(env['gpus'])}" if env["cuda_available"] else "no GPU usable"),
             f"run.device=auto uses: {device}"]
    parts = optional_parts()
    for name, _, what in OPTIONAL:
        lines.append(f"{name:12s} {'yes' if parts[name] else 'no ':3s}  {what}")
    return lines
