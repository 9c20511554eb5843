"""A run directory -> one self-contained ``report.html`` (inline SVG and CSS; no scripts, no external URLs).

``write_report(run_dir, extra_sections=())`` reads what ``enas search`` / ``enas train`` wrote (config.json,
metrics.jsonl, archs.jsonl, derive.json, best_arch.json, result.json, and final/ for the retrained network),
draws the curves and architectures with ``enas.viz`` and writes ``run_dir/report.html``. Missing files or
fields only drop the pieces that need them. Pure Python: no torch import.

The commands write the reports, not the procedures (which never import this module): ``search_report`` after
``enas search``, ``write_run_report`` after ``enas rank``, ``write_compare_reports`` (each run's report and the
comparison page, ``write_compare_page``) after ``enas compare``. A report problem there is a warning, never a
failed command. The collapse warning is the rule of ``enas.stats`` (``is_collapsing``), the one the search log uses.
"""

from __future__ import annotations

import html
import json
import logging
import math
import os
import platform
import re
from dataclasses import dataclass, field
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Sequence

from . import stats
from .errors import EnasError
from .stats import PARAMETER_FREE
from .viz import VizError, to_svg
from .viz.plots import Series, finite, line_chart, stacked_area

log = logging.getLogger("enas")

REPORT_NAME = "report.html"
MAX_ARCH_DRAWINGS = 10
DERIVE_ROWS = 10
# Colours for op-frequency areas: parameter-free ops in warm colours, the others in cool ones.
WARM = ("#dc2626", "#f97316", "#facc15", "#db2777")
COOL = ("#1d4ed8", "#0891b2", "#16a34a", "#7c3aed", "#4b5563", "#65a30d")


class ReportError(EnasError, ValueError):
    """The run directory cannot be reported on; the message (one line) says why."""


@dataclass
class Run:
    path: Path
    config: dict = field(default_factory=dict)
    result: dict = field(default_factory=dict)
    metrics: list[dict] = field(default_factory=list)
    archs: list[dict] = field(default_factory=list)
    derive: dict = field(default_factory=dict)
    best_arch: dict | None = None
    final_metrics: list[dict] = field(default_factory=list)
    final_result: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # problems met while reading

    @property
    def epochs(self) -> list[dict]:
        return [r for r in self.metrics if r.get("kind") == "epoch"]

    @property
    def table_rows(self) -> list[dict]:
        """Rows of a controller-only search against a benchmark table (``controller.reward=table``)."""
        return [r for r in self.metrics if r.get("kind") == "table"]

    @property
    def is_search(self) -> bool:
        keys = {k for r in self.epochs for k in r}
        return bool(self.archs or self.derive or self.table_rows or keys & {"baseline", "op_freq", "ctrl_reward"})

    @property
    def space(self) -> str:
        for src in (self.result, self.config, self.best_arch or {}):
            if isinstance(src.get("space"), str):
                return src["space"]
        return "?"


# ------------------------------------------------------------------------------------------------ reading
def _read_json(path: Path, notes: list[str]) -> dict | None:
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        notes.append(f"{path.name}: unreadable ({e.__class__.__name__}); skipped")
        return None
    return obj if isinstance(obj, dict) else None


def _read_jsonl(path: Path, notes: list[str]) -> list[dict]:
    if not path.exists():
        return []
    rows, bad = [], 0
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(row, dict):
            rows.append(row)
    if bad:
        notes.append(f"{path.parent.name}/{path.name}: {bad} unreadable line(s) skipped (an interrupted write?)")
    return rows


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory; raises ReportError if it is not one (no directory, no metrics)."""
    path = Path(run_dir)
    if not path.is_dir():
        raise ReportError(f"report: {run_dir}: no such run directory")
    if not (path / "metrics.jsonl").exists():
        raise ReportError(f"report: {run_dir}: no metrics.jsonl here; give a run directory written by "
                          "`enas search` or `enas train`")
    run = Run(path)
    run.metrics = _read_jsonl(path / "metrics.jsonl", run.notes)
    if not run.metrics:
        raise ReportError(f"report: {run_dir}: metrics.jsonl has no rows yet; nothing to report")
    run.config = _read_json(path / "config.json", run.notes) or {}
    run.result = _read_json(path / "result.json", run.notes) or {}
    run.archs = [r for r in _read_jsonl(path / "archs.jsonl", run.notes) if isinstance(r.get("arch"), dict)]
    run.derive = _read_json(path / "derive.json", run.notes) or {}
    run.best_arch = (_read_json(path / "best_arch.json", run.notes) or run.result.get("best_arch")
                     or run.result.get("arch") or _read_json(path / "arch.json", run.notes))
    final = path / "final"
    if final.is_dir():
        run.final_metrics = [r for r in _read_jsonl(final / "metrics.jsonl", run.notes) if r.get("kind") == "epoch"]
        run.final_result = _read_json(final / "result.json", run.notes) or {}
    if not run.final_result and isinstance(run.result.get("final"), dict):
        run.final_result = run.result["final"]
    if not run.is_search:  # a training run: its own metrics are the final-training curves
        run.final_metrics = run.final_metrics or run.epochs
        run.final_result = run.final_result or run.result
    return run


# --------------------------------------------------------------------------------------------------- plots
def _epoch_x(rows: list[dict]) -> tuple[float, ...]:
    return tuple(float(r.get("epoch", i)) + 1 for i, r in enumerate(rows))


def _col(rows: list[dict], key: str) -> tuple[float | None, ...]:
    return tuple(r.get(key) if finite(r.get(key)) else None for r in rows)


def _has(rows: list[dict], key: str) -> bool:
    return any(finite(r.get(key)) for r in rows)


def _shared_x(run: Run) -> tuple[list[dict], tuple[float, ...]]:
    """The ``kind: shared`` rows and their position in epochs (from the steps per epoch of the epoch rows)."""
    shared = [r for r in run.metrics if r.get("kind") == "shared" and finite(r.get("global_step"))]
    ep = [r for r in run.epochs if finite(r.get("global_step")) and finite(r.get("epoch"))]
    if not shared or not ep:
        return [], ()
    spe = ep[0]["global_step"] / (ep[0]["epoch"] + 1)
    if spe <= 0:
        return [], ()
    return shared, tuple(r["global_step"] / spe for r in shared)


def _with_steps(run: Run, key: str, label: str) -> list[Series]:
    ep = run.epochs
    out = [Series(f"{label} (epoch mean)", _epoch_x(ep), _col(ep, key))] if _has(ep, key) else []
    shared, xs = _shared_x(run)
    if shared and _has(shared, key):
        out.append(Series(f"{label} (every few steps)", xs, _col(shared, key), color="#93c5fd"))
    return out


def op_collapse_note(rows: list[dict]) -> tuple[str, bool]:
    """A sentence on the share of parameter-free ops sampled (first vs last epoch), and whether to warn: the
    collapse rule (``stats.is_collapsing``) on the last epoch's ``stats.policy_op_freq``, as the search log does."""
    freqs = [f for f in (stats.policy_op_freq(r) for r in rows) if f]
    th = stats.collapse_threshold(freqs[-1]) if freqs else None
    if th is None:
        return "", False
    first, last = stats.parameter_free_share(freqs[0]), stats.parameter_free_share(freqs[-1])
    ops = [op for op in freqs[-1] if op in PARAMETER_FREE]
    warn = stats.is_collapsing(freqs[-1])
    text = (f"Parameter-free ops ({', '.join(ops)}) were {last:.0%} of the ops sampled in the last epoch "
            f"({first:.0%} in the first; {th[0]:.0%} under uniform sampling, alarm at {th[1]:.0%}).")
    if warn:
        text += " The controller may be collapsing onto parameter-free ops (a known ENAS failure mode)."
    return text, warn


def _op_freq_chart(rows: list[dict]) -> str | None:
    rows = [r for r in rows if isinstance(r.get("op_freq"), dict) and r["op_freq"]]
    if not rows:
        return None
    ops: list[str] = []
    for r in rows:
        ops += [k for k in r["op_freq"] if k not in ops]
    ops = [o for o in ops if o not in PARAMETER_FREE] + [o for o in ops if o in PARAMETER_FREE]
    x = _epoch_x(rows)
    warm, cool = iter(WARM * 3), iter(COOL * 3)
    series = [Series(op, x, tuple(r["op_freq"].get(op, 0.0) for r in rows),
                     color=next(warm) if op in PARAMETER_FREE else next(cool)) for op in ops]
    return stacked_area(series, "Ops sampled per epoch", ylabel="fraction of op choices")


def _skip_chart(run: Run) -> str | None:
    ep = run.epochs
    arch_layers = (run.best_arch or {}).get("layers")  # only a space with skip connections has layers
    if not isinstance(arch_layers, list) or not _has(ep, "ctrl_skips") or len(arch_layers) < 2:
        return None
    layers = len(arch_layers)
    total = layers * (layers - 1) / 2
    rate = tuple(v / total if v is not None else None for v in _col(ep, "ctrl_skips"))
    series = [Series("skip rate sampled", _epoch_x(ep), rate)]
    target = (run.config.get("controller") or {}).get("skip_target")
    if finite(target):
        series.append(Series("skip_target", _epoch_x(ep), tuple(float(target) for _ in ep), color="#6b7280",
                             dashed=True))
    return line_chart(series, "Skip connections (macro)", ylabel="fraction of possible skips")


def search_plots(run: Run) -> list[tuple[str, str]]:
    """(svg, caption) for every search curve whose data is in the run."""
    ep, out = run.epochs, []
    loss = _with_steps(run, "loss", "training loss")
    if loss:
        out.append((line_chart(loss, "Shared weights: loss", ylabel="loss"),
                    "Training loss of the shared weights, each minibatch on a freshly sampled architecture."))
    acc = _with_steps(run, "acc", "training accuracy")
    if _has(ep, "derive_best"):
        acc.append(Series("best of the epoch's derive (validation)", _epoch_x(ep), _col(ep, "derive_best"),
                          color="#16a34a"))
    if acc:
        out.append((line_chart(acc, "Shared weights: accuracy", ylabel="accuracy"),
                    "Accuracy of sampled architectures with the shared weights."))
    ctrl = [Series(name, _epoch_x(ep), _col(ep, key), dashed=dashed)
            for key, name, dashed in (("ctrl_reward", "reward of the controller's samples", False),
                                      ("ctrl_uniform_reward", "reward of uniform architectures", False),
                                      ("baseline", "baseline (moving average)", True)) if _has(ep, key)]
    if ctrl:
        out.append((line_chart(ctrl, "Controller: reward and baseline", ylabel="reward"),
                    "Mean reward of the controller's samples, of uniformly drawn architectures on the same weights "
                    "and batches (the controller is searching while it stays above them), and the baseline."))
    if _has(ep, "ctrl_reward_snr"):
        snr = tuple(v if finite(v) else None for v in _col(ep, "ctrl_reward_snr"))
        x = _epoch_x(ep)
        out.append((line_chart([Series("reward SNR", x, snr),
                                Series("1 (signal = noise)", x, tuple(1.0 for _ in x), color="#6b7280", dashed=True)],
                               "Controller: reward signal-to-noise", ylabel="between-architecture / batch variance"),
                    "Variance of the reward between architectures over the variance from the validation batch "
                    "(uniform architectures, each scored on two batches). Below 1 the batch decides the reward."))
    if _has(ep, "ctrl_entropy"):
        out.append((line_chart([Series("entropy", _epoch_x(ep), _col(ep, "ctrl_entropy"))], "Controller: entropy",
                               ylabel="nats per architecture"),
                    "Entropy of the controller's policy; a fast drop means it has stopped exploring."))
    out += _truth_plots(run)
    freq = _op_freq_chart(ep)
    if freq:
        note, _ = op_collapse_note(ep)
        out.append((freq, "Share of each op among the op choices sampled for the shared-weight steps. " + note))
    skip = _skip_chart(run)
    if skip:
        out.append((skip, "Fraction of the possible skip connections switched on in the controller's samples."))
    if _has(ep, "lr"):
        out.append((line_chart([Series("learning rate", _epoch_x(ep), _col(ep, "lr"))], "Shared weights: learning rate",
                               ylabel="lr"), "Learning rate of the shared weights (last value of each epoch)."))
    if any((r.get("nonfinite_steps") or 0) > 0 for r in ep):
        out.append((line_chart([Series("skipped steps", _epoch_x(ep), _col(ep, "nonfinite_steps"), color="#dc2626")],
                               "Non-finite steps (skipped)", ylabel="steps, cumulative"),
                    "Steps whose loss or gradient was not finite and were skipped."))
    return out


def _truth_plots(run: Run) -> list[tuple[str, str]]:
    """Ground truth over the search (a space with a benchmark table): what the search is really finding."""
    gt = run.result.get("ground_truth") or {}
    ds = run.result.get("benchmark_dataset") or (run.config.get("search") or {}).get("benchmark_dataset", "cifar10")
    best = (gt.get("best") or {}).get(ds)
    ep, out = run.epochs, []
    if _has(ep, "sampled_truth") or _has(ep, "derive_truth"):
        x = _epoch_x(ep)
        series = [Series(name, x, _col(ep, key), color=color) for key, name, color in
                  (("sampled_truth", "mean of the architectures trained this epoch", "#2563eb"),
                   ("derive_truth", "the epoch's derived architecture", "#16a34a")) if _has(ep, key)]
        if finite(best):
            series.append(Series("best cell of the benchmark", x, tuple(best for _ in x), color="#6b7280", dashed=True))
        out.append((line_chart(series, f"Ground truth ({ds} test accuracy, %)", ylabel="%"),
                    "The benchmark's 200-epoch test accuracy of what the search samples and derives."))
    rows = run.table_rows
    if rows:
        x = tuple(float(r.get("samples", i)) for i, r in enumerate(rows))
        series = [Series("mean of the update's samples", x, _col(rows, "truth")),
                  Series("best found so far (by reward)", x, _col(rows, "best_truth"), color="#16a34a")]
        if finite(best):
            series.append(Series("best cell of the benchmark", x, tuple(best for _ in x), color="#6b7280", dashed=True))
        out.append((line_chart(series, f"Controller only: ground truth ({ds}, %)", ylabel="%", xlabel="cells sampled"),
                    "Each update samples controller.num_aggregate cells; the reward is the table's accuracy."))
        out.append((line_chart([Series("entropy", x, _col(rows, "entropy"))], "Controller: entropy",
                               ylabel="nats per architecture", xlabel="cells sampled"),
                    "Entropy of the sampled cells' policy (uniform: 6 ln 5 = 9.66 nats)."))
    return out


def final_plots(run: Run) -> list[tuple[str, str]]:
    rows, out = run.final_metrics, []
    x = _epoch_x(rows)
    if _has(rows, "loss"):
        out.append((line_chart([Series("training loss", x, _col(rows, "loss"))], "Final training: loss", ylabel="loss"),
                    "Training loss of the fixed network."))
    acc = [Series(name, x, _col(rows, key)) for key, name in
           (("acc", "training accuracy"), ("valid_acc", "validation accuracy")) if _has(rows, key)]
    if acc:
        out.append((line_chart(acc, "Final training: accuracy", ylabel="accuracy"), "Accuracy per epoch."))
    ppl = [Series(name, x, _col(rows, key)) for key, name in
           (("ppl", "training perplexity"), ("valid_ppl", "validation perplexity")) if _has(rows, key)]
    if ppl:
        out.append((line_chart(ppl, "Final training: perplexity", ylabel="perplexity"), "Perplexity per epoch."))
    return out


# ---------------------------------------------------------------------------------------------------- html
def esc(v: object) -> str:
    return html.escape(str(v), quote=True)


_ID = re.compile(r'\bid="([^"]+)"')


def scope_ids(svg: str, prefix: str) -> str:
    """Prefix every id (and the ``#id`` references to it) so that several SVGs can share one HTML page."""
    ids = set(_ID.findall(svg))
    if not ids:
        return svg
    svg = _ID.sub(lambda m: f'id="{prefix}-{m.group(1)}"', svg)

    def ref(m: re.Match) -> str:
        return f"{m.group(1)}#{prefix}-{m.group(2)}{m.group(3)}" if m.group(2) in ids else m.group(0)

    return re.sub(r'(url\(|href=")#([^)"]+)(\)|")', ref, svg)


class _Figures:
    """Numbers the inline SVGs so that their ids stay unique on the page."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, svg: str, caption: str = "", cls: str = "fig") -> str:
        self.n += 1
        body = scope_ids(svg, f"f{self.n}")
        cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
        return f'<figure class="{cls}">{body}{cap}</figure>'


def _arch_svg(arch: dict) -> str | None:
    try:
        return to_svg(arch)
    except VizError as e:
        log.warning("report: cannot draw an architecture: %s", e)
        return None


def _fmt(v: object) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int) and not isinstance(v, bool) and abs(v) >= 10000:
        return f"{v:,}"
    return str(v)


def _duration(s: object) -> str:
    if not finite(s):
        return "?"
    s = float(s)
    h, rem = divmod(int(round(s)), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else (f"{m}m {sec:02d}s" if m else f"{s:.1f} s")


def _table(rows: Sequence[Sequence[object]], header: Sequence[str] | None = None, raw_cols: Sequence[int] = ()) -> str:
    head = "<tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>" if header else ""
    body = "".join("<tr>" + "".join(f"<td>{c if i in raw_cols else esc(_fmt(c))}</td>" for i, c in enumerate(r))
                   + "</tr>" for r in rows)
    return f"<table>{head}{body}</table>"


def _test_metric(res: dict) -> tuple[str, object] | None:
    for key, name in (("test_acc", "test accuracy"), ("test_ppl", "test perplexity"), ("test_metric", "test metric")):
        if finite(res.get(key)):
            return name, res[key]
    return None


def _summary(run: Run) -> str:
    r, cfg = run.result, run.config
    ep = run.epochs
    total = (cfg.get("shared") if run.is_search else cfg.get("train")) or {}
    kind = "search" if run.is_search else "training"
    rows: list[tuple[str, object]] = [("run directory", str(run.path)), ("kind", kind), ("space", run.space)]
    if (cfg.get("data") or {}).get("source"):
        rows.append(("data", cfg["data"]["source"]))
    done = (int(ep[-1].get("epoch", len(ep) - 1)) + 1) if ep else 0
    rows.append(("epochs done", f"{done} of {total.get('epochs', '?')}"))
    if finite(r.get("derive_score")):
        rows.append(("derive score of the best architecture", r["derive_score"]))
    gt = r.get("ground_truth")
    if isinstance(gt, dict):
        ds = r.get("benchmark_dataset", "cifar10")
        rows.append((f"ground truth of the derived cell ({ds} test accuracy, benchmark)",
                     f"{_fmt(gt.get(ds))} % (rank {gt.get(f'{ds}_rank')} of {gt.get('of')}, "
                     f"percentile {_fmt(gt.get(f'{ds}_percentile'))}; best cell {_fmt((gt.get('best') or {}).get(ds))} %)"))
        for other in ("cifar10", "cifar100", "imagenet16"):
            if other != ds and finite(gt.get(other)):
                rows.append((f"ground truth on {other}", f"{_fmt(gt[other])} % (rank {gt.get(f'{other}_rank')})"))
    tm = _test_metric(run.final_result)
    if tm:
        rows.append((tm[0] + " (final training)", tm[1]))
    params = run.final_result.get("params", r.get("params"))
    if params is not None:
        rows.append(("parameters", params))
    if finite(r.get("search_time_s")):
        rows.append(("search time", _duration(r["search_time_s"])))
    wall = r.get("wall_time_s")
    if finite(wall):
        rows.append(("wall time", _duration(wall)))
    elif ep and finite(ep[-1].get("time")):
        rows.append(("time so far (last epoch row)", _duration(ep[-1]["time"])))
    if not r:
        rows.append(("status", "no result.json: the run is unfinished or was interrupted"))
    nonfinite = max((x.get("nonfinite_steps") or 0 for x in ep), default=0)
    if nonfinite:
        rows.append(("non-finite steps skipped", nonfinite))
    return _table(rows)


def _environment(run: Run) -> str:
    rows: list[tuple[str, object]] = []
    recorded = False
    for name, src in (("result.json", run.result), ("final/result.json", run.final_result),
                      ("config.json", run.config)):
        for key in ("platform", "hardware", "host", "environment", "device"):
            if key in src and not isinstance(src[key], (dict, list)):
                rows.append((f"{key} ({name})", src[key]))
                recorded = recorded or key != "device"
            elif isinstance(src.get(key), dict):
                rows += [(f"{key}.{k} ({name})", v) for k, v in src[key].items()]
                recorded = True
    dev = (run.config.get("run") or {}).get("device")
    if dev is not None:
        rows.append(("run.device (config)", dev))
    note = ""
    if not recorded:
        note = ("<p class=\"note\">The run files do not record the machine; the rows marked "
                "<em>at report time</em> describe the machine that wrote this report.</p>")
        try:
            torch_version = metadata.version("torch")
        except metadata.PackageNotFoundError:
            torch_version = "not installed"
        rows += [("platform (at report time)", platform.platform()),
                 ("processor (at report time)", platform.processor() or platform.machine()),
                 ("CPU cores (at report time)", os.cpu_count()),
                 ("Python (at report time)", platform.python_version()),
                 ("torch (at report time)", torch_version)]
    return note + _table(rows)


def _arch_key(arch: object) -> str:
    return json.dumps(arch, sort_keys=True)


def _evolution(run: Run, fig: _Figures) -> str:
    rows, prev, distinct = [], None, {}
    best_key = _arch_key(run.best_arch) if run.best_arch else None
    for r in run.archs:
        key = _arch_key(r["arch"])
        if key not in distinct:
            distinct[key] = (f"A{len(distinct) + 1}", r)
        label = distinct[key][0] + (" (final best)" if key == best_key else "")
        changed = "—" if prev is None else ("yes" if key != prev else "no")
        rows.append((int(r.get("epoch", 0)) + 1, r.get("score", "?"), changed, label))
        prev = key
    table = _table(rows, ("epoch", "score", "changed", "architecture"))
    items = list(distinct.values())
    if len(items) > MAX_ARCH_DRAWINGS:  # evenly spaced, first and last included
        step = (len(items) - 1) / (MAX_ARCH_DRAWINGS - 1)
        items = [items[round(i * step)] for i in range(MAX_ARCH_DRAWINGS)]
    drawings = []
    for label, r in items:
        svg = _arch_svg(r["arch"])
        if svg:
            drawings.append(fig(svg, f"{label}: first best at epoch {int(r.get('epoch', 0)) + 1}, "
                                     f"score {_fmt(r.get('score', '?'))}", cls="fig small"))
    shown = "" if len(items) == len(distinct) else f" ({len(items)} of {len(distinct)} drawn)"
    return (f"<p>Best architecture of each epoch's small derive; {len(distinct)} distinct{shown}.</p>"
            f"{table}<div class=\"grid\">{''.join(drawings)}</div>")


def _derive_table(run: Run) -> str:
    table = run.derive.get("table") or []
    best_key = _arch_key(run.best_arch) if run.best_arch else None
    rows = []
    for i, r in enumerate(table[:DERIVE_ROWS]):
        actions = r.get("actions")
        code = " ".join(map(str, actions)) if isinstance(actions, list) else ""
        same = "yes" if best_key and _arch_key(r.get("arch")) == best_key else ""
        rows.append((i + 1, r.get("score", "?"), f"<code>{esc(code)}</code>", same))
    samples = run.derive.get("samples", len(table))
    return (f"<p>{esc(samples)} architectures sampled from the trained controller, each scored on the same "
            f"validation batches; the top {len(rows)}, best first (actions: the controller's choices).</p>"
            + _table(rows, ("rank", "score", "actions", "final best"), raw_cols=(2,)))


def _final_section(run: Run, fig: _Figures) -> str:
    res = run.final_result
    keys = ("test_acc", "test_ppl", "valid_ppl", "metric", "params", "epochs", "wall_time_s", "device", "dataset",
            "num_classes", "image_size")
    rows = [(k, _duration(res[k]) if k == "wall_time_s" else res[k]) for k in keys if k in res]
    plots = "".join(fig(svg, cap) for svg, cap in final_plots(run))
    return (_table(rows) if rows else "<p>No final result yet.</p>") + f'<div class="grid">{plots}</div>'


CSS = """
body{font-family:-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0;background:#f3f4f6;color:#111827}
main{max-width:1180px;margin:0 auto;padding:24px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:19px;margin:0 0 12px}
section{background:#fff;border:1px solid #e5e7eb;border-radius:8px;padding:16px 20px;margin:16px 0}
nav a{margin-right:14px;color:#1d4ed8;text-decoration:none}
table{border-collapse:collapse;margin:8px 0;font-size:14px}
td,th{border:1px solid #e5e7eb;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f9fafb}
code,pre{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
pre{background:#f9fafb;border:1px solid #e5e7eb;padding:10px;overflow:auto;max-height:600px}
.grid{display:flex;flex-wrap:wrap;gap:12px}
figure{margin:0;max-width:100%}
figure.fig{flex:1 1 520px;max-width:580px}
figure.small{flex:0 1 360px;max-width:360px}
figure.wide{max-width:100%}
figure svg{max-width:100%;height:auto;display:block}
figcaption{font-size:13px;color:#4b5563;margin-top:4px}
.note{color:#4b5563;font-size:14px}
.warn{background:#fef2f2;border:1px solid #fecaca;color:#991b1b;padding:8px 12px;border-radius:6px}
.meta{color:#6b7280;font-size:13px}
"""


def render_report(run: Run, extra_sections: Sequence[tuple[str, str]] = ()) -> str:
    """The report's HTML text."""
    fig = _Figures()
    sections: list[tuple[str, str, str]] = [("summary", "Summary", _summary(run))]
    for n in run.notes:
        log.warning("report: %s", n)
    if run.best_arch:
        svg = _arch_svg(run.best_arch)
        what = "best architecture found" if run.is_search else "architecture trained"
        body = fig(svg, what, cls="fig wide") if svg else "<p>(cannot be drawn)</p>"
        body += ("<details><summary>architecture JSON</summary><pre>"
                 f"{esc(json.dumps(run.best_arch, indent=1))}</pre></details>")
        sections.append(("arch", "Best architecture" if run.is_search else "Architecture", body))
    if run.is_search:
        plots = search_plots(run)
        note, warn = op_collapse_note(run.epochs)
        body = f'<p class="warn">{esc(note)}</p>' if warn else ""
        body += f'<div class="grid">{"".join(fig(s, c) for s, c in plots)}</div>' if plots else "<p>No curves.</p>"
        sections.append(("search", "Search curves", body))
        if run.archs:
            sections.append(("evolution", "Architecture over the epochs", _evolution(run, fig)))
        if run.derive.get("table"):
            sections.append(("derive", "Derive", _derive_table(run)))
    if run.final_result or run.final_metrics:
        sections.append(("final", "Final training" if run.is_search else "Training", _final_section(run, fig)))
    cfg = (f"<details><summary>resolved configuration (config.json)</summary><pre>"
           f"{esc(json.dumps(run.config, indent=2))}</pre></details>") if run.config else "<p>No config.json.</p>"
    sections.append(("config", "Configuration", cfg))
    sections.append(("env", "Time and hardware", _environment(run)))
    for i, (title, body) in enumerate(extra_sections):
        sections.append((f"extra{i + 1}", str(title), body))
    if run.notes:
        sections.append(("notes", "Notes", "<ul>" + "".join(f"<li>{esc(n)}</li>" for n in run.notes) + "</ul>"))
    nav = "".join(f'<a href="#{sid}">{esc(title)}</a>' for sid, title, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{esc(title)}</h2>{content}</section>' for sid, title, content in sections)
    stamp = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    title = f"ENAS report: {run.path.resolve().name}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>{esc(title)}</h1><p class=\"meta\">{esc(run.space)} space · written {esc(stamp)}</p>"
            f"<nav>{nav}</nav>{body}</main></body></html>\n")


def write_report(run_dir: str | Path, extra_sections: Sequence[tuple[str, str]] = ()) -> Path:
    """Write ``run_dir/report.html`` and return its path. ``extra_sections``: (title, html) pairs appended
    as sections (the html is inserted as is)."""
    run = load_run(run_dir)
    from .evaluate import report_sections  # rank.json / compare.json, when present
    text = render_report(run, list(report_sections(run.path)) + list(extra_sections))
    out = run.path / REPORT_NAME
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out)
    log.info("report written to %s", out)
    return out


def write_run_report(run_dir: str | Path) -> Path | None:
    """The report at the end of a command that made or changed a run: written when the run's saved config asks for
    it (``run.report``, on by default), under the run's lock (taken here unless this process holds it, and then
    released). Any failure, a run in use by another process included, is logged as a warning and gives None: a
    report problem never fails the command."""
    from .rundir import held_locks, lock_run, release_locks
    path = Path(run_dir)
    before = held_locks()
    try:
        cfg = json.loads((path / "config.json").read_text())
        if not (cfg.get("run") or {}).get("report", True):
            return None
        lock_run(path)
        return write_report(path)
    except Exception as e:  # noqa: BLE001 - the report is a courtesy
        log.warning("could not write the HTML report: %s", e)
        return None
    finally:
        release_locks(held_locks() - before)


def search_report(run_dir: str | Path) -> Path | None:
    """``write_run_report`` after a search (``enas search``, ``api.search``, a Ray trial, each run of a comparison).
    A controller-only table search (``controller.reward=table``) gets none, as it never has (``enas report`` still
    makes one)."""
    try:
        cfg = json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, ValueError):
        cfg = {}
    if isinstance(cfg, dict) and (cfg.get("controller") or {}).get("reward") == "table":
        return None
    report, result = Path(run_dir) / REPORT_NAME, Path(run_dir) / "result.json"
    if report.exists() and result.exists() and report.stat().st_mtime_ns >= result.stat().st_mtime_ns:
        return report  # a finished run resumed: nothing changed, and a resume changes no file
    return write_run_report(run_dir)


def write_compare_page(out: str | Path, summary: dict) -> Path:
    """``out/report.html``: the comparison over seeds (``compare.json``'s ``summary``) as one page."""
    from .evaluate import compare_section
    body = compare_section(summary)
    title = f"ENAS vs random: {summary.get('space', '')} ({esc(str(summary.get('data', '')))})"
    text = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main><h1>{esc(title)}</h1>"
            f"<section><h2>Comparison over seeds</h2>{body}</section>"
            f"<section><h2>Configuration</h2><pre>{esc(json.dumps(summary.get('config'), indent=1))}</pre>"
            "</section></main></body></html>\n")
    path = Path(out) / REPORT_NAME
    path.write_text(text, encoding="utf-8")
    return path


def write_compare_reports(out: str | Path, summary: dict) -> Path:
    """After ``enas compare``: the report of each run that has none yet (``search_report``; a run finished by an
    earlier call kept the one written then) and the comparison page, ``out/report.html`` (always)."""
    for r in summary.get("runs", []):
        d = Path(r["run_dir"])
        if not (d / REPORT_NAME).exists():
            search_report(d)
    return write_compare_page(out, summary)


def cli_report(run_dir: str) -> int:
    """``enas report RUN_DIR``: write the report and print its path. Raises ReportError (a ValueError)."""
    path = write_report(run_dir)
    print(path)  # the command's output
    return 0
