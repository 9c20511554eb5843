"""Export a trained fixed model for deployment: TorchScript, ONNX, a plain state_dict and a model card.

``export_run(RUN_DIR)`` reads a training run (``enas train``: ``config.json``, ``arch.json``, ``model.pt``,
``result.json``) or a search run whose final training finished (its ``final/`` directory), rebuilds the fixed
model on the CPU in eval mode and wraps it so that it returns logits only:

* image spaces (micro, macro): ``image [N, C, H, W] float32, normalised -> logits [N, classes]``. Drop-path and
  the auxiliary head are training-only and absent from the export.
* recurrent space: ``(tokens [T, B] int64, hidden [B, H] float32) -> (logits [T, B, vocab], hidden [B, H])``;
  start from ``hidden = zeros`` and feed the returned hidden state back to continue a sequence.

Files written into ``out_dir`` (default ``RUN_DIR/export/``), per format:

* ``torchscript``: ``model.torchscript.pt``: ``torch.jit.load`` needs only torch (no ``enas``).
* ``onnx``: ``model.onnx`` (dynamic batch axis; dynamic time axis for the recurrent model). Needs ``onnx``
  (``pip install 'enas[export]'``); when ``onnxruntime`` is installed the file is also checked against PyTorch.
* ``state_dict``: ``state_dict.pt``: the fixed model's plain ``state_dict`` (load with ``weights_only=True``).
* ``json``: ``arch.json``, ``model_card.json`` (inputs, outputs, normalisation, classes, parameter count, test
  metric, files) and, for the recurrent space, ``vocab.json`` (token id -> word) when the corpus can be read.

Image inputs must be normalised as in training: ``(pixel / 255 - mean) / std`` per channel, with the mean and
std of the training split. They are recomputed from the training data (cheap) and stored in the model card; when
the data cannot be read at export time the card says so and leaves them out.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Iterable

import torch
from torch import nn

from .errors import EnasError

log = logging.getLogger("enas")

FORMATS = ("torchscript", "onnx", "state_dict", "json")
FILES = {"torchscript": "model.torchscript.pt", "onnx": "model.onnx", "state_dict": "state_dict.pt",
         "arch": "arch.json", "model_card": "model_card.json", "vocab": "vocab.json"}
CARD_FORMAT = 1
INSTALL_HINT = "pip install 'enas[export]'"
_VERIFY_ATOL = 1e-4


class ExportError(EnasError, ValueError):
    """A run cannot be exported (missing directory or files, unknown format, missing package). One line."""


# ------------------------------------------------------------------------------------------------ wrappers
class ImageClassifier(nn.Module):
    """A fixed CNN as deployed: normalised images ``[N, C, H, W]`` -> logits ``[N, classes]`` (eval mode)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        logits, _ = self.net(image)
        return logits


class LanguageModelStep(nn.Module):
    """The recurrent LM without its extras: ``(tokens [T, B], hidden [B, H]) -> (logits [T, B, V], hidden)``.

    Traced on one time step (``T = 1``), where the cell's Python loop over time is a single iteration."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, hidden, _ = self.lm(tokens, hidden)
        return logits, hidden


class LanguageModelLoop(nn.Module):
    """Scripted loop over time around a traced one-step model, so that any sequence length works."""

    def __init__(self, step: nn.Module):
        super().__init__()
        self.step = step

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        outs: list[torch.Tensor] = []
        for t in range(tokens.size(0)):
            logits, hidden = self.step(tokens[t:t + 1], hidden)
            outs.append(logits)
        return torch.cat(outs, 0), hidden


# ------------------------------------------------------------------------------------------------- loading
def resolve_run_dir(run_dir: str | Path) -> Path:
    """The directory holding the trained model: ``run_dir`` itself, or a search run's ``final/``."""
    p = Path(run_dir)
    if not p.is_dir():
        raise ExportError(f"{p}: no such run directory")
    if (p / "model.pt").is_file():
        return p
    final = p / "final"
    if (final / "model.pt").is_file():
        return final
    if final.is_dir():
        raise ExportError(f"{final}: no model.pt (the final training has not finished; continue it with "
                          f"enas search --resume {p})")
    if (p / "config.json").is_file() and not (p / "arch.json").is_file():
        raise ExportError(f"{p}: a search run without a trained model (no final/model.pt); train its "
                          f"architecture first: enas train {p} --out DIR")
    raise ExportError(f"{p}: no model.pt (not a finished training run)")


def load_run(run_dir: str | Path) -> dict:
    """Rebuild the trained fixed model of a run on the CPU, in eval mode.

    Returns plain data plus the module: ``{"dir", "cfg", "arch", "space", "result", "model", "kind"}`` where
    ``kind`` is ``"image"`` or ``"lm"``. Raises ExportError with a one-line message.
    """
    from . import archio, build, config as C, spaces
    from .rundir import RunDirError, read_json
    d = resolve_run_dir(run_dir)
    for name in ("config.json", "arch.json", "result.json"):
        if not (d / name).is_file():
            raise ExportError(f"{d}: {name} missing (not a complete training run)")
    try:
        cfg = C.from_dict(read_json(d / "config.json"))
        result = read_json(d / "result.json")
        arch, space = archio.read_arch(str(d / "arch.json"), cfg.space, build.make_space(cfg))
    except (RunDirError, C.ConfigError, spaces.ArchError) as e:
        raise ExportError(_one_line(e)) from None
    if not isinstance(result, dict):
        raise ExportError(f"{d / 'result.json'}: expected a JSON object")
    space_of = getattr(spaces.get(cfg.space), "space_of", None)
    if space_of is not None:
        space = space_of(arch, space)
    try:
        if spaces.is_text(cfg.space):
            from .text_task import fixed_lm_model
            model = fixed_lm_model(cfg, arch, space, vocab_size=int(result["vocab_size"]))
            kind = "lm"
        else:
            model = build.make_cnn(cfg.space, space, cfg.final_net, num_classes=int(result["num_classes"]),
                                   in_channels=int(result["in_channels"]), arch=arch)
            kind = "image"
    except KeyError as e:
        raise ExportError(f"{d / 'result.json'}: field {e.args[0]} missing") from None
    try:
        state = torch.load(d / "model.pt", map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as e:  # noqa: BLE001 - a corrupt or foreign file: one line naming it
        raise ExportError(f"{d / 'model.pt'}: cannot load into the {cfg.space} model of arch.json "
                          f"({_one_line(e)[:300]})") from None
    model.eval()
    return {"dir": d, "cfg": cfg, "arch": arch, "space": space, "result": result, "model": model, "kind": kind}


# ------------------------------------------------------------------------------------------------- export
def export_run(run_dir: str | Path, out_dir: str | Path | None = None, *,
               formats: Iterable[str] = FORMATS, opset: int = 17, read_data: bool = True) -> dict[str, Path]:
    """Export the trained model of ``run_dir`` (see the module docstring); returns ``{kind: path}`` of the files
    written (keys among ``torchscript, onnx, state_dict, arch, model_card, vocab``).

    ``read_data=False`` skips reading the training data (normalisation statistics, vocabulary) for the card.
    Raises ExportError (a ValueError) with a one-line message.
    """
    fmts = _check_formats(formats)
    resolve_run_dir(run_dir)  # a missing run is reported before a missing package
    if "onnx" in fmts:
        _require_onnx()
    run = load_run(run_dir)
    out = Path(out_dir) if out_dir is not None else Path(run_dir) / "export"
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ExportError(f"{out}: cannot create ({e.strerror})") from None
    model, kind = run["model"], run["kind"]
    extra = _data_info(run) if read_data and "json" in fmts else {}
    example = _example_inputs(run, batch=2, extra=extra)
    check = _example_inputs(run, batch=3, extra=extra, seed=1)
    with torch.no_grad():
        expected = _eager(run, check)
    written: dict[str, Path] = {}
    verified: dict[str, float] = {}
    if "state_dict" in fmts:
        written["state_dict"] = _atomic(out / FILES["state_dict"], lambda p: torch.save(model.state_dict(), p))
    if "torchscript" in fmts:
        module = _torchscript(run, example)
        path = _atomic(out / FILES["torchscript"], lambda p: _silently(torch.jit.save, module, str(p)))
        loaded = _silently(torch.jit.load, str(path), map_location="cpu")
        with torch.no_grad():
            verified["torchscript"] = _max_diff(loaded(*check), expected)
        if verified["torchscript"] > _VERIFY_ATOL:
            raise ExportError(f"{path}: the TorchScript model differs from PyTorch by "
                              f"{verified['torchscript']:.2e} on a check input")
        written["torchscript"] = path
    if "onnx" in fmts:
        written["onnx"] = _onnx(run, example, out / FILES["onnx"], opset)
        diff = _onnx_check(written["onnx"], check, expected)
        if diff is not None:
            verified["onnx"] = diff
            if diff > _VERIFY_ATOL:
                raise ExportError(f"{written['onnx']}: onnxruntime differs from PyTorch by {diff:.2e}")
    if "json" in fmts:
        from . import spaces
        from .rundir import write_json
        mod = spaces.get(run["cfg"].space)
        write_json(out / FILES["arch"], mod.to_dict(run["arch"]))
        written["arch"] = out / FILES["arch"]
        if kind == "lm" and extra.get("vocab"):
            write_json(out / FILES["vocab"], list(extra["vocab"]))
            written["vocab"] = out / FILES["vocab"]
        card = model_card(run, extra, {k: p.name for k, p in written.items()}, opset if "onnx" in fmts else None,
                          verified)
        card["files"]["model_card"] = FILES["model_card"]
        write_json(out / FILES["model_card"], card)
        written["model_card"] = out / FILES["model_card"]
    log.info("exported %s to %s", ", ".join(sorted(written)), out)
    return written


def model_card(run: dict, extra: dict, files: dict[str, str], opset: int | None, verified: dict) -> dict:
    """The plain-data description of an export (what goes into ``model_card.json``)."""
    from . import __version__, spaces
    from .models import count_params
    cfg, result, model = run["cfg"], run["result"], run["model"]
    card: dict = {"format": CARD_FORMAT, "generator": f"enas {__version__}", "space": cfg.space,
                  "source_run": str(run["dir"]), "arch": spaces.get(cfg.space).to_dict(run["arch"]),
                  "parameters": count_params(model), "metric": result.get("metric"),
                  "test_metric": result.get("test_metric"), "dataset": result.get("dataset"),
                  "epochs": result.get("epochs")}
    if run["kind"] == "image":
        c, h, w = _image_shape(run, extra)
        k = int(result["num_classes"])
        card.update({
            "task": "image_classification",
            "inputs": [{"name": "image", "dtype": "float32", "shape": ["batch", c, h, w],
                        "description": "images normalised per channel: (pixel / 255 - mean) / std"}],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": ["batch", k],
                         "description": "class scores (apply softmax for probabilities)"}],
            "num_classes": k, "classes": list(extra["classes"]) if extra.get("classes") else None,
        })
        if extra.get("mean") is not None:
            card["normalization"] = {"mean": extra["mean"], "std": extra["std"], "pixel_scale": 255.0,
                                     "formula": "(pixel / 255 - mean) / std",
                                     "computed_on": "the training split used by the run"}
        else:
            card["normalization"] = None
            card["normalization_note"] = ("inputs must be normalised as in training: (pixel / 255 - mean) / std "
                                          "per channel, with the mean and std of the training split; the training "
                                          "data could not be read at export time"
                                          + (f" ({extra['data_error']})" if extra.get("data_error") else ""))
    else:
        v, hs = int(result["vocab_size"]), int(cfg.final_net.hidden_size)
        card.update({
            "task": "language_model",
            "inputs": [{"name": "tokens", "dtype": "int64", "shape": ["time", "batch"],
                        "description": "token ids (see vocab.json)"},
                       {"name": "hidden", "dtype": "float32", "shape": ["batch", hs],
                        "description": "recurrent state: zeros to start a sequence, then the returned hidden"}],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": ["time", "batch", v],
                         "description": "next-token scores"},
                        {"name": "hidden_out", "dtype": "float32", "shape": ["batch", hs]}],
            "vocab_size": v, "hidden_size": hs,
        })
        if not extra.get("vocab"):
            card["vocab_note"] = ("vocab.json not written: the corpus could not be read at export time"
                                  + (f" ({extra['data_error']})" if extra.get("data_error") else ""))
    card["files"] = dict(files)
    if opset is not None:
        card["onnx_opset"] = opset
    if verified:
        card["verified_max_abs_diff"] = {k: float(v) for k, v in verified.items()}
    return card


def cli_export(run_dir: str, out: str | None, formats: list[str] | None) -> int:
    """``enas export RUN_DIR [--out DIR] [--format F ...]``: print the written paths; exit status 0, or 2 with
    one line on stderr. ``formats`` items may be comma-separated lists."""
    fmts = FORMATS if not formats else [f.strip() for item in formats for f in item.split(",") if f.strip()]
    try:
        written = export_run(run_dir, out, formats=fmts)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for key in ("torchscript", "onnx", "state_dict", "arch", "model_card", "vocab"):
        if key in written:
            print(f"{key:12s} {written[key]}")
    return 0


# ------------------------------------------------------------------------------------------------ helpers
def _check_formats(formats: Iterable[str]) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = [formats]
    fmts = tuple(dict.fromkeys(formats))
    if not fmts:
        raise ExportError(f"no export format given; choose from {', '.join(FORMATS)}")
    bad = [f for f in fmts if f not in FORMATS]
    if bad:
        raise ExportError(f"unknown export format {', '.join(map(repr, bad))}; choose from {', '.join(FORMATS)}")
    return fmts


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ExportError(f"ONNX export needs the onnx package: {INSTALL_HINT}") from None


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _atomic(path: Path, write) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ExportError(f"{path}: cannot write ({e.strerror or e})") from None
    return path


def _data_info(run: dict) -> dict:
    """Normalisation statistics and class names (images) or the vocabulary (text), read from the run's data as
    training read it. Best effort: ``{"data_error": ...}`` when the data is not available here."""
    cfg = run["cfg"]
    try:
        if run["kind"] == "lm":
            from .data.text import load_corpus
            from .text_task import _source
            corpus = load_corpus(_source(cfg), vocab_size=cfg.data.vocab_size)
            if len(corpus.vocab) != int(run["result"]["vocab_size"]):
                return {"data_error": f"the corpus now has {len(corpus.vocab)} words, the model "
                                      f"{run['result']['vocab_size']}"}
            return {"vocab": corpus.vocab}
        from . import build
        from .data.images import channel_stats
        from .tasks import load_image_splits
        # the same generator and split as train_fixed, so the statistics are those the model was trained with
        ds, train, _, _ = load_image_splits(cfg, build.make_generator(cfg.run.seed * 1000 + 11),
                                            with_valid=cfg.data.valid > 0)
        mean, std = channel_stats(train.x)
        return {"mean": [float(v) for v in mean], "std": [float(v) for v in std], "classes": list(ds.classes),
                "image_hw": ds.image_hw}
    except Exception as e:  # noqa: BLE001 - data missing here (other machine, moved): the card says so
        log.warning("export: training data not readable (%s); the model card will not hold %s", _one_line(e),
                    "the vocabulary" if run["kind"] == "lm" else "the normalisation statistics")
        return {"data_error": _one_line(e)[:200]}


def _image_shape(run: dict, extra: dict) -> tuple[int, int, int]:
    r = run["result"]
    h, w = extra.get("image_hw") or (int(r["image_size"]), int(r["image_size"]))
    return int(r["in_channels"]), int(h), int(w)


def _example_inputs(run: dict, *, batch: int, extra: dict, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    if run["kind"] == "image":
        c, h, w = _image_shape(run, extra)
        return (torch.randn(batch, c, h, w, generator=g),)
    v, hs = int(run["result"]["vocab_size"]), int(run["cfg"].final_net.hidden_size)
    steps = 1 if seed == 0 else 5
    return (torch.randint(0, v, (steps, batch), generator=g), 0.1 * torch.randn(batch, hs, generator=g))


def _eager(run: dict, inputs: tuple[torch.Tensor, ...]):
    if run["kind"] == "image":
        return ImageClassifier(run["model"]).eval()(*inputs)
    return LanguageModelStep(run["model"]).eval()(*inputs)


def _max_diff(a, b) -> float:
    a = a if isinstance(a, (tuple, list)) else (a,)
    b = b if isinstance(b, (tuple, list)) else (b,)
    return max(float((torch.as_tensor(x) - torch.as_tensor(y)).abs().max()) for x, y in zip(a, b))


def _quiet():
    """Collect the deprecation and tracer warnings of torch.jit / torch.onnx; they are logged at debug level
    (correctness is checked numerically instead)."""
    return warnings.catch_warnings(record=True)


def _log_caught(caught: list) -> None:
    for msg in dict.fromkeys(str(w.message).splitlines()[0] for w in caught):
        log.debug("export: %s", msg)


def _silently(fn, *args, **kwargs):
    with _quiet() as caught:
        warnings.simplefilter("always")
        out = fn(*args, **kwargs)
    _log_caught(caught)
    return out


def _torchscript(run: dict, example: tuple[torch.Tensor, ...]) -> torch.jit.ScriptModule:
    with _quiet() as caught:
        warnings.simplefilter("always")
        try:
            if run["kind"] == "image":
                module = torch.jit.trace(ImageClassifier(run["model"]).eval(), example, check_trace=False)
            else:
                step = torch.jit.trace(LanguageModelStep(run["model"]).eval(), example, check_trace=False)
                module = torch.jit.script(LanguageModelLoop(step).eval())
        except Exception as e:  # noqa: BLE001 - report which model failed, in one line
            raise ExportError(f"TorchScript export of the {run['cfg'].space} model failed: {_one_line(e)[:300]}") \
                from None
    _log_caught(caught)
    return module


def _onnx(run: dict, example: tuple[torch.Tensor, ...], path: Path, opset: int) -> Path:
    import onnx
    if run["kind"] == "image":
        module: nn.Module = ImageClassifier(run["model"]).eval()
        names_in, names_out = ["image"], ["logits"]
        axes = {"image": {0: "batch"}, "logits": {0: "batch"}}
    else:
        module = _torchscript(run, example)  # the scripted time loop becomes an ONNX Loop
        names_in, names_out = ["tokens", "hidden"], ["logits", "hidden_out"]
        axes = {"tokens": {0: "time", 1: "batch"}, "hidden": {0: "batch"}, "logits": {0: "time", 1: "batch"},
                "hidden_out": {0: "batch"}}
    kw = dict(input_names=names_in, output_names=names_out, dynamic_axes=axes, opset_version=opset,
              do_constant_folding=True)
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kw["dynamo"] = False  # the TorchScript-based exporter: needs only onnx (the dynamo one needs onnxscript)
    tmp = path.with_name(path.name + ".tmp")
    with _quiet() as caught:
        warnings.simplefilter("always")
        try:
            with torch.no_grad():
                torch.onnx.export(module, example, str(tmp), **kw)
            onnx.checker.check_model(str(tmp))
        except Exception as e:  # noqa: BLE001 - an unsupported op, an opset too old: one line
            tmp.unlink(missing_ok=True)
            raise ExportError(f"ONNX export (opset {opset}) of the {run['cfg'].space} model failed: "
                              f"{_one_line(e)[:300]}") from None
    _log_caught(caught)
    os.replace(tmp, path)
    return path


def _onnx_check(path: Path, inputs: tuple[torch.Tensor, ...], expected) -> float | None:
    """Max abs difference between onnxruntime and PyTorch on ``inputs``; None when onnxruntime is missing."""
    try:
        import onnxruntime as ort
    except ImportError:
        log.info("onnxruntime not installed: %s not checked against PyTorch", path.name)
        return None
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs)}
    got = sess.run(None, feed)
    return _max_diff([torch.from_numpy(g) for g in got], expected)
