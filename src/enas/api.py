"""The Python API, mirroring the command line.

>>> from enas import api, config
>>> cfg = config.load_config("default")                     # or a preset name / file / overrides
>>> result = api.search(cfg, out="runs/demo")               # search, derive, retrain (cfg.search.retrain)
>>> result = api.search(cfg, data=(x, y))                   # own data: tensors, or any map-style Dataset
>>> arch = api.load_arch("runs/demo/best_arch.json", cfg)    # JSON file, run directory or integer string
>>> table = api.derive("runs/demo", samples=100)            # re-derive from a finished search
>>> summary = api.compare(cfg, [0, 1, 2], "runs/cmp")        # ENAS vs random search over seeds
>>> api.train(cfg, arch, out="runs/final")                  # train one architecture from scratch

Data from Python (``data=``, ``test_data=``, ``classes=``): a pair ``(x, y)`` of tensors or arrays (images uint8
0..255 or floats in [0, 1], (N, C, H, W) or (N, H, W); integer labels) or a map-style ``torch.utils.data.Dataset``
of ``(image, label)`` items (a torchvision dataset without transforms, or with ``ToTensor``, works; so does a
Hugging Face ``datasets`` split of ``{"image", "label"}`` dicts). Without ``test_data`` a test set is split off
as from an image folder (stratified by ``run.seed``); ``data.image_size``, ``data.limit_per_class`` and
``data.valid`` apply as to any source, and the images are normalised and augmented on the device as usual. The
run's ``config.json`` records ``data.source = "python:<name>:<digest of the content>"``; the images are not
saved. Hence exact resume holds only from Python with the same data passed again
(``api.search(cfg, data=same, resume=RUN_DIR)``; other data is refused); ``enas search --resume``,
``enas train --resume`` and ``api.derive`` without ``data=`` stop with a one-line error saying so, and
``enas export`` writes no normalisation statistics into the model card.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator, Sequence

from . import config as C


def search(cfg: C.Config, out: str | Path | None = None, *, resume: str | Path | None = None, data: Any = None,
           test_data: Any = None, classes: Sequence[str] | None = None) -> dict:
    """Run a search (see ``enas.search.search``) and write its ``report.html`` (as ``run.report`` asks; a report
    failure is a warning); returns the run's ``result.json`` content plus ``run_dir``. ``data`` / ``test_data`` /
    ``classes``: images from Python instead of ``cfg.data.source`` (see the module docstring)."""
    from .distributed import from_env
    from .report import search_report
    from .search import search as _search
    with _python_data(cfg, data, test_data, classes, resume) as cfg:
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


def train(cfg: C.Config, arch, out: str | Path | None = None, *, resume: bool = False, data: Any = None,
          test_data: Any = None, classes: Sequence[str] | None = None) -> dict:
    """Train ``arch`` (an architecture object of ``cfg.space``) from scratch with ``cfg.final_net``/``cfg.train``;
    ``data`` / ``test_data`` / ``classes`` as for ``search``."""
    from .train import train_fixed
    with _python_data(cfg, data, test_data, classes, out if resume else None) as cfg:
        return train_fixed(cfg, arch, out, resume=resume)


def load_arch(text: str, cfg: C.Config):
    """An architecture from a JSON file, a run directory or an integer string, in ``cfg.space``."""
    from . import build
    from .archio import read_arch
    return read_arch(str(text), cfg.space, build.make_space(cfg))[0]


def fixed_model(cfg: C.Config, arch, *, num_classes: int, in_channels: int = 3):
    """The fixed network of ``arch`` shaped by ``cfg.final_net``, untrained, as an ``enas.models.Classifier``:
    ``model(x)`` gives the logits outside training and ``(logits, aux_logits)`` while training when
    ``final_net.aux_weight > 0`` (else the logits), for one's own training loop."""
    from . import build, spaces
    from .models import Classifier
    space_of = getattr(spaces.get(cfg.space), "space_of", None)
    space = build.make_space(cfg) if space_of is None else space_of(arch, build.make_space(cfg))
    return Classifier(build.make_cnn(cfg.space, space, cfg.final_net, num_classes=num_classes,
                                     in_channels=in_channels, arch=arch))


def load_model(run_dir: str | Path):
    """The trained fixed model of a training run (or a search run's ``final/``), built from the run's own
    config.json, arch.json and model.pt on the CPU, in eval mode, as an ``enas.models.Classifier``
    (``model(x)`` -> logits). Raises ``ExportError`` (one line) for a run that has no trained image model."""
    from .export import ExportError, load_run
    from .models import Classifier
    run = load_run(run_dir)
    if run["kind"] != "image":
        raise ExportError(f"{run['dir']}: a language model; load it with enas.export.load_run")
    return Classifier(run["model"]).eval()


def derive(run_dir: str | Path, samples: int = 100, seed: int = 0, *, data: Any = None, test_data: Any = None,
           classes: Sequence[str] | None = None) -> list[dict]:
    """Sample ``samples`` architectures from a search's final checkpoint and score them (best first); a search on
    data passed from Python needs the same ``data`` again."""
    from . import build, checkpoint
    from .rundir import read_json
    from .search import CKPT, derive as _derive, setup
    run_dir = Path(run_dir)
    cfg = C.from_dict(read_json(run_dir / "config.json"))
    state, _, _ = checkpoint.load_latest(run_dir / CKPT)
    import tempfile
    with tempfile.TemporaryDirectory() as tmp, _python_data(cfg, data, test_data, classes, run_dir) as cfg:
        state = dict(state, metrics_size=0)
        run = setup(C.replace(cfg, run=C.replace(cfg.run, progress=False)), Path(tmp), lambda: False, state)
        try:
            return _derive(run, samples, build.make_generator(seed, run.device))
        finally:
            run.metrics.close()


@contextlib.contextmanager
def _python_data(cfg: C.Config, data: Any, test_data: Any, classes: Sequence[str] | None,
                 run_dir: str | Path | None) -> Iterator[C.Config]:
    """``cfg`` reading ``data`` (held in this process for the call), or ``cfg`` itself when ``data`` is None.
    With ``run_dir`` (a resume) the data must be the run's own: the digest in its config.json must match."""
    if data is None:
        if test_data is not None or classes is not None:
            raise C.ConfigError("test_data and classes go with data= (images passed from Python)")
        yield cfg
        return
    from .data.images import DataError, _MEMORY, memory_source, release_source
    before = set(_MEMORY)
    source = memory_source(data, test_data, classes=classes)
    held = source in before  # registered by the caller (images.memory_source): theirs to release
    try:
        if run_dir is not None and (Path(run_dir) / "config.json").is_file():
            from .rundir import read_json
            saved = C.from_dict(read_json(Path(run_dir) / "config.json")).data.source
            if saved != source:
                raise DataError(f"data: the run in {run_dir} was made with data.source {saved}; the data passed now "
                                f"is {source} (pass the run's own data to resume it)")
        yield C.replace(cfg, data=C.replace(cfg.data, source=source))
    finally:
        if not held:
            release_source(source)
