"""Parallel runs on a Ray cluster: retrain the best derived architectures, or run independent searches.

Ray is an optional extra (``pip install 'enas[ray]'``), imported only here and only when used. Each trial is one
Ray task with its own resources (``cpus``/``gpus`` per trial) that calls the ordinary library function
(``train_fixed`` or ``search``) with a run directory inside the parent run directory; the driver collects every
result into that directory and names the winner.

Nothing reaches the network by default: a local cluster is started (no dashboard), usage statistics are off
(``RAY_USAGE_STATS_ENABLED=0``) and token authentication is disabled (``RAY_AUTH_MODE=disabled``; Ray 2.60
otherwise writes a token under the home folder). Ray keeps its own files in its temp folder (``temp_dir``).
On a multi-node cluster (``address``) every node must see the run directory at the same path (shared storage).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from . import config as C
from .rundir import RunDirError, read_json, write_json

log = logging.getLogger("enas")

INSTALL_HINT = "the Ray engine needs Ray: pip install 'enas[ray]' (or: pip install 'ray>=2.9')"


class RayMissing(RunDirError):
    pass


def _ray(address: str | None, num_cpus: int | None, temp_dir: str | None):
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        import ray
    except ImportError:
        raise RayMissing(INSTALL_HINT) from None
    if not ray.is_initialized():
        kw = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
        if address:
            ray.init(address=address, **kw)
        else:
            ray.init(num_cpus=num_cpus, _temp_dir=temp_dir, **kw)
    return ray


def _threads() -> None:
    import ray
    import torch
    n = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)) or 1
    torch.set_num_threads(max(1, n))


def _valid_metric(run_dir: Path) -> float | None:
    """The last epoch's validation accuracy of a training run (None without a validation split)."""
    p = run_dir / "metrics.jsonl"
    if not p.exists():
        return None
    rows = [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
    vals = [r["valid_acc"] for r in rows if r.get("kind") == "epoch" and "valid_acc" in r]
    return vals[-1] if vals else None


def _train_trial(cfg_dict: dict, arch_dict: dict, out: str) -> dict:
    from . import build, spaces
    from .train import train_fixed
    _threads()
    cfg = C.from_dict(cfg_dict)
    mod = spaces.get(cfg.space)
    arch = mod.from_dict(arch_dict, build.make_space(cfg))
    result = train_fixed(cfg, arch, out)
    return {**result, "valid_acc": _valid_metric(Path(out)), "run_dir": out}


def _search_trial(cfg_dict: dict, out: str) -> dict:
    from .report import search_report
    from .search import search
    _threads()
    result = search(C.from_dict(cfg_dict), out)
    search_report(out)  # as run.report asks; a failure is a warning
    return {**result, "run_dir": out}


def top_archs(run_dir: Path, k: int) -> list[dict]:
    """The ``k`` best distinct architectures of a search's final derive (``derive.json``), best first."""
    table = read_json(run_dir / "derive.json")["table"]
    seen, out = set(), []
    for row in table:
        key = json.dumps(row["arch"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(row)
        if len(out) == k:
            break
    return out


def retrain(run_dir: str | Path, top_k: int, *, address: str | None = None, cpus: float = 1, gpus: float = 0,
            num_cpus: int | None = None, temp_dir: str | None = None) -> dict:
    """Retrain the ``top_k`` best architectures of the search in ``run_dir`` in parallel (one Ray task each).

    Trial ``i`` trains in ``RUN_DIR/retrain/arch-i``; ``RUN_DIR/retrain/results.json`` holds every result and
    the winner (highest validation accuracy; test accuracy when the config keeps no validation split).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "derive.json").exists():
        raise RunDirError(f"{run_dir}: no derive.json (is this a finished search run directory?)")
    cfg = C.from_dict(read_json(run_dir / "config.json"))
    cfg = C.replace(cfg, run=C.replace(cfg.run, progress=False))
    rows = top_archs(run_dir, top_k)
    base = run_dir / "retrain"
    base.mkdir(exist_ok=True)
    ray = _ray(address, num_cpus, temp_dir)
    task = ray.remote(num_cpus=cpus, num_gpus=gpus)(_train_trial)
    refs = [task.remote(C.to_dict(cfg), r["arch"], str((base / f"arch-{i}").resolve())) for i, r in enumerate(rows)]
    results = ray.get(refs)
    for i, (r, row) in enumerate(zip(results, rows)):
        r["rank"], r["derive_score"] = i, row["score"]
    key = "valid_acc" if all(r.get("valid_acc") is not None for r in results) else "test_acc"
    best = max(results, key=lambda r: r[key])
    summary = {"top_k": len(results), "metric": key, "winner": best["rank"], "winner_dir": best["run_dir"],
               "winner_arch": best["arch"], "results": results}
    write_json(base / "results.json", summary)
    log.info("retrained %d architectures; winner arch-%d (%s %.4f)", len(results), best["rank"], key, best[key])
    return summary


def search_seeds(cfg: C.Config, seeds: list[int], out: str | Path | None, *, address: str | None = None,
                 cpus: float = 1, gpus: float = 0, num_cpus: int | None = None, temp_dir: str | None = None) -> dict:
    """Independent searches, one per seed, in parallel: ``OUT/seed-S``; every summary in ``OUT/seeds.json``."""
    from .rundir import new_run_dir
    base = new_run_dir(None if out is None else str(out), "search", cfg.space)
    write_json(base / "seeds_config.json", {"seeds": seeds, "config": C.to_dict(cfg)})
    ray = _ray(address, num_cpus, temp_dir)
    task = ray.remote(num_cpus=cpus, num_gpus=gpus)(_search_trial)
    refs = [task.remote(C.to_dict(C.replace(cfg, run=C.replace(cfg.run, seed=s, progress=False))),
                        str((base / f"seed-{s}").resolve())) for s in seeds]
    results = ray.get(refs)
    best = max(range(len(seeds)), key=lambda i: results[i].get("derive_score", float("-inf")))
    summary = {"seeds": seeds, "winner_seed": seeds[best], "results": results}
    write_json(base / "seeds.json", summary)
    return summary


def shutdown_if_started() -> None:
    import sys
    ray = sys.modules.get("ray")  # never import Ray just to shut it down
    if ray is not None and ray.is_initialized():
        ray.shutdown()
