"""The Python API, mirroring the command line.

>>> from enas import api, config
>>> cfg = config.load_config("default")                     # or a preset name / file / overrides
>>> result = api.search(cfg, out="runs/demo")               # search, derive, retrain (cfg.search.retrain)
>>> arch = api.load_arch("runs/demo/best_arch.json", cfg)    # JSON file, run directory or integer string
>>> table = api.derive("runs/demo", samples=100)            # re-derive from a finished search
>>> summary = api.compare(cfg, [0, 1, 2], "runs/cmp")        # ENAS vs random search over seeds
>>> api.train(cfg, arch, out="runs/final")                  # train one architecture from scratch
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from . import config as C


def search(cfg: C.Config, out: str | Path | None = None, *, resume: str | Path | None = None) -> dict:
    """Run a search (see ``enas.search.search``) and write its ``report.html`` (as ``run.report`` asks; a report
    failure is a warning); returns the run's ``result.json`` content plus ``run_dir``."""
    from .distributed import from_env
    from .report import search_report
    from .search import search as _search
    result = _search(cfg, out, resume=resume)
    if from_env().is_main:  # under torchrun only rank 0 writes
        search_report(result["run_dir"])
    return result


def compare(cfg: C.Config, seeds: Sequence[int], out: str | Path) -> dict:
    """ENAS against random search over ``seeds`` (see ``enas.evaluate.compare_seeds``): writes ``out/compare.json``,
    each new run's report and the comparison page ``out/report.html``; returns the comparison."""
    from .evaluate import compare_seeds
    from .report import write_compare_reports
    summary = compare_seeds(cfg, seeds, out)
    write_compare_reports(out, summary)
    return summary


def train(cfg: C.Config, arch, out: str | Path | None = None, *, resume: bool = False) -> dict:
    """Train ``arch`` (an architecture object of ``cfg.space``) from scratch with ``cfg.final_net``/``cfg.train``."""
    from .train import train_fixed
    return train_fixed(cfg, arch, out, resume=resume)


def load_arch(text: str, cfg: C.Config):
    """An architecture from a JSON file, a run directory or an integer string, in ``cfg.space``."""
    from . import build
    from .archio import read_arch
    return read_arch(str(text), cfg.space, build.make_space(cfg))[0]


def derive(run_dir: str | Path, samples: int = 100, seed: int = 0) -> list[dict]:
    """Sample ``samples`` architectures from a search's final checkpoint and score them (best first)."""
    from . import build, checkpoint
    from .rundir import read_json
    from .search import CKPT, derive as _derive, setup
    run_dir = Path(run_dir)
    cfg = C.from_dict(read_json(run_dir / "config.json"))
    state, _, _ = checkpoint.load_latest(run_dir / CKPT)
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        state = dict(state, metrics_size=0)
        run = setup(C.replace(cfg, run=C.replace(cfg.run, progress=False)), Path(tmp), lambda: False, state)
        try:
            return _derive(run, samples, build.make_generator(seed, run.device))
        finally:
            run.metrics.close()
