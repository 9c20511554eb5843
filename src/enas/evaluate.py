"""Honest evaluation of a search: ranking fidelity and ENAS versus random over seeds.

* ``rank_run(run_dir, archs, epochs)``: sample architectures uniformly, score each with the trained supernet (with
  and without BN recalibration), train each stand-alone for a short fixed budget, and write ``rank.json``;
* ``compare_seeds(cfg, seeds, out)``: an ENAS and a random search per seed with the same config, each derived best
  retrained with the same final protocol; writes ``compare.json``;
* the HTML sections of those files (``rank_section``, ``compare_section``, ``report_sections``) that
  ``enas.report`` puts into a run's report.

The statistics (Kendall tau, Spearman rho, top-k, t-tests) and the collapse rule live in ``enas.stats`` (layer 0)
and are re-exported here for scripts that import them from this module. The HTML reports are written by the
commands (``enas rank``, ``enas compare``: ``enas.cli``, ``enas.api``), never by these procedures, so this module
imports nothing from ``enas.report``. Module import is pure Python (torch is imported inside the procedures).
"""

from __future__ import annotations

import html
import json
import logging
import math
from pathlib import Path
from typing import Callable, Sequence

from .stats import (PARAMETER_FREE, collapse_warning, kendall_tau, mean_std, paired_t_test,  # noqa: F401
                    parameter_free_share, pearson, ranks, spearman_rho, t_two_sided_p, top_k_overlap, top_k_regret,
                    welch_t_test)
from .viz.plots import PALETTE, Series, _frame, _svg, finite, line_chart

log = logging.getLogger("enas")

RANK_JSON = "rank.json"
COMPARE_JSON = "compare.json"
RANK_RECAL_DEFAULT = 10  # BN recalibration batches used by `enas rank` when the search itself used none


# ------------------------------------------------------------------------------------------------ plots
def scatter_chart(x: Sequence[float], y: Sequence[float], title: str, xlabel: str, ylabel: str,
                  color: str = PALETTE[0], labels: Sequence[str] | None = None) -> str:
    pts = [(a, b, (labels[i] if labels else "")) for i, (a, b) in enumerate(zip(x, y)) if finite(a) and finite(b)]
    parts, px, py, (left, top, right, bottom) = _frame(title, xlabel, ylabel, [p[0] for p in pts],
                                                        [p[1] for p in pts], 0, None, 560, 320)
    for a, b, lab in pts:
        tip = f"<title>{html.escape(lab)} ({a:.4g}, {b:.4g})</title>" if lab else ""
        parts.append(f'<circle cx="{px(a):.1f}" cy="{py(b):.1f}" r="3.5" fill="{color}" fill-opacity="0.75">'
                     f"{tip}</circle>")
    return _svg(title, 560, 320, parts)


# ------------------------------------------------------------------------------------------- rank fidelity
def _correlations(score: Sequence[float], truth: Sequence[float], k: int) -> dict:
    return {"kendall_tau": kendall_tau(score, truth), "spearman_rho": spearman_rho(score, truth),
            f"top{k}_overlap": top_k_overlap(score, truth, k), f"top{k}_regret": top_k_regret(score, truth, k)}


def rank_run(run_dir: str | Path, *, archs: int = 20, epochs: int = 1, bn_recalibrate: int | None = None,
             score_batches: int = 10, seed: int = 0, top_k: int = 5, overrides: Sequence[str] = (),
             stop: Callable[[], bool] = lambda: False, ground_truth: str | None = None) -> dict:
    """Ranking fidelity of a finished (or checkpointed) search in ``run_dir``; writes ``run_dir/rank.json``.

    With ``ground_truth`` (a benchmark name, ``nb201``) nothing is trained: the truth is the benchmark table's
    accuracy of each cell, and ``archs=0`` scores every cell of the space.

    ``archs`` architectures are sampled uniformly (generator seeded by ``seed``) and scored by the supernet on the
    first ``score_batches`` validation batches, both with batch statistics and with BN statistics recalibrated
    on ``bn_recalibrate`` training batches (default: the search's ``search.bn_recalibrate``, or
    ``RANK_RECAL_DEFAULT`` if that is 0). Each is then trained stand-alone for ``epochs`` epochs with the run's final
    protocol (``final_net``, ``train``; ``overrides`` are ``section.key=value`` changes to it) in
    ``run_dir/rank/archNNN`` (finished ones are reused). Correlations: supernet score vs stand-alone quality (test
    accuracy, or minus test perplexity).
    """
    import tempfile
    import time

    import torch

    from . import bn, build, checkpoint, config as C, search as S, spaces
    from .rundir import read_json, write_json
    from .train import train_fixed

    run_dir = Path(run_dir)
    if not (run_dir / "config.json").exists():
        raise C.ConfigError(f"rank: {run_dir}: no search run here (config.json missing)")
    cfg = C.from_dict(read_json(run_dir / "config.json"))
    ck = run_dir / S.CKPT
    if not (ck.exists() or checkpoint.previous(ck).exists()):
        raise checkpoint.CheckpointError(f"rank: {run_dir}: no search checkpoint (checkpoint.pt) to score with")
    state, _, warning = checkpoint.load_latest(ck)
    if warning:
        log.warning(warning)
    if state.get("kind") != "search":
        raise checkpoint.CheckpointError(f"rank: {ck}: not a search checkpoint")
    table = None
    if ground_truth is not None:
        from . import benchmarks
        if ground_truth != cfg.space or not benchmarks.has_table(cfg.space):
            raise C.ConfigError(f"rank: --ground-truth {ground_truth}: not the benchmark of this {cfg.space} run "
                                f"(benchmarks: {', '.join(benchmarks.BENCHMARKS)})")
        table = benchmarks.table_for(cfg.space, cfg.search.benchmark or None)
    if (archs < 2 and not (archs == 0 and table is not None)) or epochs < 0 or score_batches < 1:
        raise C.ConfigError("rank: --archs must be >= 2 (or all, with --ground-truth), --epochs >= 0, "
                            "score_batches >= 1")
    recal = bn_recalibrate if bn_recalibrate is not None else (cfg.search.bn_recalibrate or RANK_RECAL_DEFAULT)
    quiet = C.replace(cfg.run, progress=False, report=False)
    with tempfile.TemporaryDirectory() as tmp:
        run = S.setup(C.replace(cfg, run=quiet), Path(tmp), stop=lambda: False)
        try:
            run.model.load_state_dict(state["model"])
            run.epoch = state["epoch"]
            gen = build.make_generator(10_000 + seed, run.device)
            if archs == 0:  # every cell of the benchmark
                sampled = [run.mod.read_string(s, run.space) for s in table.strings]
                actions = torch.tensor([run.mod.actions_from_arch(a, run.space) for a in sampled])
                archs = len(sampled)
            else:
                actions = run.uniform(archs, generator=gen).actions
                sampled = S.decode(run, actions)
            batches = run.task.fixed_valid_batches(score_batches)
            rows = []
            t0 = time.perf_counter()
            with torch.no_grad():
                run.model.eval()
                plain = [S._score(run, a, batches).item() for a in sampled]
                t_plain = time.perf_counter() - t0
                has_bn = bn.has_bn(run.model)
                if has_bn and recal > 0:
                    bn.keep_running_stats(run.model)
                    calib = S.calibration_batches(run, recal)
                    t1 = time.perf_counter()
                    recal_scores = [S._score(run, a, batches, calib).item() for a in sampled]
                    t_recal = time.perf_counter() - t1
                else:
                    recal_scores, t_recal = None, 0.0
        finally:
            run.metrics.close()
    if table is not None:
        ds = cfg.search.benchmark_dataset
        rows = [{"index": i, "actions": a, "arch": run.mod.to_dict(arch), "supernet_score_batch_stats": plain[i],
                 "standalone": table.accuracy(arch, ds), "standalone_quality": table.accuracy(arch, ds),
                 "standalone_metric": f"{ground_truth}_{ds}_test_acc"}
                for i, (arch, a) in enumerate(zip(sampled, actions.tolist()))]
        for row, s in zip(rows, recal_scores or []):
            row["supernet_score_recalibrated"] = s
        return _rank_summary(run_dir, cfg, state, rows, plain, recal_scores, archs=archs, epochs=0, seed=seed,
                             score_batches=score_batches, recal=recal, top_k=top_k,
                             times=(t_plain, t_recal), ground_truth=ground_truth)
    tree, errs = C.parse_overrides(list(overrides))
    if errs:
        raise C.ConfigError(errs)
    fcfg = C._merge(cfg, tree, errs, "rank overrides")
    errs += C.check(fcfg)
    if errs:
        raise C.ConfigError(errs)
    fcfg = C.replace(fcfg, train=C.replace(fcfg.train, epochs=epochs), run=quiet,
                     search=C.replace(fcfg.search, checkpoint_every=0))
    rnn = spaces.is_text(cfg.space)
    for i, (arch, a) in enumerate(zip(sampled, actions.tolist())):
        d = run_dir / "rank" / f"arch{i:03d}"
        res = train_fixed(fcfg, arch, d, resume=d.is_dir() and any(d.iterdir()), stop=stop)
        quality = -res["test_ppl"] if rnn else res["test_acc"]
        row = {"index": i, "actions": a, "arch": run.mod.to_dict(arch), "supernet_score_batch_stats": plain[i],
               "standalone": res["test_ppl"] if rnn else res["test_acc"], "standalone_quality": quality,
               "standalone_metric": "test_ppl" if rnn else "test_acc", "params": res.get("params"),
               "train_time_s": res.get("wall_time_s")}
        if recal_scores is not None:
            row["supernet_score_recalibrated"] = recal_scores[i]
        rows.append(row)
        log.info("rank %d/%d: supernet %.4f  stand-alone %s %.4f", i + 1, archs,
                 (recal_scores or plain)[i], row["standalone_metric"], row["standalone"])
    return _rank_summary(run_dir, cfg, state, rows, plain, recal_scores, archs=archs, epochs=epochs, seed=seed,
                         score_batches=score_batches, recal=recal, top_k=top_k, times=(t_plain, t_recal))


def _rank_summary(run_dir: Path, cfg, state: dict, rows: list[dict], plain: list[float],
                  recal_scores: list[float] | None, *, archs: int, epochs: int, seed: int, score_batches: int,
                  recal: int, top_k: int, times: tuple[float, float], ground_truth: str | None = None) -> dict:
    """Correlations of the supernet's scores with the truth; writes rank.json (``enas rank`` writes the report)."""
    from .rundir import write_json
    truth = [r["standalone_quality"] for r in rows]
    k = max(1, min(top_k, archs))
    out = {"run_dir": str(run_dir), "space": cfg.space, "archs": archs, "epochs": epochs, "seed": seed,
           "score_batches": score_batches, "bn_recalibrate": recal if recal_scores is not None else 0,
           "top_k": k, "standalone_metric": rows[0]["standalone_metric"], "search_epoch": state["epoch"],
           "score_time_s": {"batch_stats": round(times[0], 3), "recalibrated": round(times[1], 3)},
           "batch_stats": _correlations(plain, truth, k)}
    if ground_truth is not None:
        out["ground_truth"] = ground_truth
    if recal_scores is not None:
        out["recalibrated"] = _correlations(recal_scores, truth, k)
    primary = out.get("recalibrated", out["batch_stats"])
    out.update({"kendall_tau": primary["kendall_tau"], "spearman_rho": primary["spearman_rho"],
                "top_k_overlap": primary[f"top{k}_overlap"], "top_k_regret": primary[f"top{k}_regret"],
                "primary": "recalibrated" if recal_scores is not None else "batch_stats"})
    out["table"] = rows
    write_json(run_dir / RANK_JSON, _json_safe(out))
    log.info("rank: tau %.3f  rho %.3f  top-%d overlap %.2f (%s)", out["kendall_tau"], out["spearman_rho"], k,
             out["top_k_overlap"], out["primary"])
    return out


def _json_safe(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    return v


def _f(v: object, digits: int = 4) -> str:
    return f"{v:.{digits}f}" if finite(v) else "—"


def _table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    e = html.escape
    head = "<tr>" + "".join(f"<th>{e(str(h))}</th>" for h in header) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{head}{body}</table>"


def rank_section(rank: dict) -> str:
    """HTML for a report section from ``rank.json``."""
    rows = rank.get("table") or []
    metric = rank.get("standalone_metric", "standalone")
    parts = []
    corr = []
    for key, name in (("recalibrated", f"BN recalibrated ({rank.get('bn_recalibrate')} batches)"),
                      ("batch_stats", "batch statistics")):
        c = rank.get(key)
        if c:
            corr.append((name, _f(c.get("kendall_tau"), 3), _f(c.get("spearman_rho"), 3),
                         _f(c.get(f"top{rank.get('top_k')}_overlap"), 2)))
    parts.append(f"<p>{len(rows)} architectures sampled uniformly, scored by the supernet (epoch "
                 f"{rank.get('search_epoch')}) on {rank.get('score_batches')} validation batches, then each trained "
                 f"stand-alone for {rank.get('epochs')} epoch(s) ({html.escape(metric)}).</p>")
    parts.append(_table(corr, ("supernet scoring", "Kendall τ", "Spearman ρ", f"top-{rank.get('top_k')} overlap")))
    key = "supernet_score_recalibrated" if rows and "supernet_score_recalibrated" in rows[0] \
        else "supernet_score_batch_stats"
    xs = [r.get(key) for r in rows]
    ys = [r.get("standalone") for r in rows]
    svg = scatter_chart(xs, ys, "Supernet score vs stand-alone", "supernet score", metric,
                        labels=[f"arch {r.get('index')}" for r in rows])
    parts.append(f'<figure class="fig">{svg}<figcaption>Each point is one architecture ({html.escape(key)}).'
                 "</figcaption></figure>")
    return "".join(parts)


# ------------------------------------------------------------------------------------------ seed comparison
METHODS = ("enas", "random")


def compare_seeds(cfg, seeds: Sequence[int], out: str | Path, *, stop: Callable[[], bool] = lambda: False) -> dict:
    """For each seed, an ENAS search and a random search (``controller.kind=random``) with the same config (same
    shared-weight steps, same derive samples, same final-training protocol); writes ``out/compare.json``. Finished
    runs in ``out`` are reused, interrupted ones resumed. The HTML pages (each run's and ``out/report.html``) are
    the caller's: ``report.write_compare_reports``."""
    from . import config as C
    from .rundir import read_json, write_json
    from .search import search

    if not seeds:
        raise C.ConfigError("compare: --seeds needs at least one seed")
    truth = cfg.space in C.TABLE_SPACES  # a benchmark's ground truth judges the derived cells: no retraining
    if not truth and (not cfg.search.retrain or cfg.train.epochs < 1):
        raise C.ConfigError("compare: needs search.retrain=true and train.epochs >= 1 (the final protocol)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in seeds:
        for method in METHODS:
            c = C.replace(cfg, controller=C.replace(cfg.controller, kind=method),
                          run=C.replace(cfg.run, seed=int(seed)))
            d = out / f"{method}-seed{seed}"
            if (d / "result.json").exists():
                res = read_json(d / "result.json")
            elif (d / "config.json").exists():
                res = search(c, resume=d, stop=stop)
            else:
                res = search(c, out=d, stop=stop)
            runs.append(_compare_row(method, int(seed), d, res))
            log.info("compare: %s seed %s: %s %.4f", method, seed, runs[-1]["metric"], runs[-1]["final"])
    summary = summarize_compare(runs, cfg.space)
    summary.update({"seeds": [int(s) for s in seeds], "space": cfg.space, "data": cfg.data.source,
                    "shared_epochs": cfg.shared.epochs, "derive_samples": cfg.search.derive_samples,
                    "train_epochs": cfg.train.epochs, "config": C.to_dict(cfg)})
    write_json(out / COMPARE_JSON, _json_safe(summary))
    return summary


def _compare_row(method: str, seed: int, d: Path, res: dict) -> dict:
    final = res.get("final") or {}
    ppl = final.get("test_ppl", res.get("test_ppl"))
    rnn = ppl is not None and res.get("test_acc") is None
    metric, value = ("test_ppl", ppl) if rnn else ("test_acc", res.get("test_acc"))
    gt = res.get("ground_truth")
    if isinstance(gt, dict):  # a benchmark's 200-epoch test accuracy of the derived cell (percent)
        ds = res.get("benchmark_dataset", "cifar10")
        metric, value = f"ground_truth_{ds}", gt.get(ds)
    return {"method": method, "seed": seed, "run_dir": str(d), "metric": metric,
            "final": value, "derive_score": res.get("derive_score"),
            "search_time_s": res.get("search_time_s"), "wall_time_s": res.get("wall_time_s"),
            "params": res.get("params"), "best_arch": res.get("best_arch")}


def summarize_compare(runs: list[dict], space: str = "") -> dict:
    metric = runs[0]["metric"] if runs else "test_acc"
    by = {m: [r for r in runs if r["method"] == m] for m in METHODS}
    stats = {}
    for m, rs in by.items():
        v = [r["final"] for r in rs if finite(r["final"])]
        mu, sd = mean_std(v)
        t = [r["search_time_s"] for r in rs if finite(r.get("search_time_s"))]
        stats[m] = {"mean": mu, "std": sd, "n": len(v), "search_time_s_mean": mean_std(t)[0]}
    a = {r["seed"]: r["final"] for r in by["enas"] if finite(r["final"])}
    b = {r["seed"]: r["final"] for r in by["random"] if finite(r["final"])}
    common = sorted(set(a) & set(b))
    lower_better = metric == "test_ppl"
    wins = sum(1 for s in common if (a[s] < b[s] if lower_better else a[s] > b[s]))
    diff = stats["enas"]["mean"] - stats["random"]["mean"]
    return {"metric": metric, "lower_is_better": lower_better, "stats": stats,
            "welch": welch_t_test(list(a.values()), list(b.values())),
            "paired": paired_t_test([a[s] for s in common], [b[s] for s in common]),
            "enas_wins": wins, "pairs": len(common),
            "enas_better_on_mean": (diff < 0) if lower_better else (diff > 0), "runs": runs}


def compare_section(summary: dict) -> str:
    metric = summary.get("metric", "test_acc")
    st = summary.get("stats", {})
    rows = [(m, f"{_f(st[m]['mean'])} ± {_f(st[m]['std'])}", st[m]["n"], _f(st[m].get("search_time_s_mean"), 1))
            for m in METHODS if m in st]
    w, p = summary.get("welch", {}), summary.get("paired", {})
    how = ("the benchmark's ground truth of each derived best" if metric.startswith("ground_truth")
           else "of each derived best, retrained with the same protocol")
    text = (f"<p>Final {html.escape(metric)} ({'lower' if summary.get('lower_is_better') else 'higher'} is better): "
            f"{how}. Welch t = {_f(w.get('t'), 3)}, "
            f"df = {_f(w.get('df'), 1)}, p = {_f(w.get('p'), 3)}; paired (same seed) t = {_f(p.get('t'), 3)}, "
            f"p = {_f(p.get('p'), 3)}; ENAS better on {summary.get('enas_wins')} of {summary.get('pairs')} seeds."
            "</p>")
    table = _table(rows, ("method", f"{metric} mean ± std", "seeds", "search time mean (s)"))
    per = [(r["seed"], r["method"], _f(r["final"]), _f(r.get("derive_score")), _f(r.get("search_time_s"), 1))
           for r in summary.get("runs", [])]
    per_table = _table(per, ("seed", "method", metric, "derive score", "search time (s)"))
    seeds = sorted({r["seed"] for r in summary.get("runs", [])})
    series = [Series(m, tuple(float(s) for s in seeds),
                     tuple(next((r["final"] for r in summary["runs"] if r["method"] == m and r["seed"] == s), None)
                           for s in seeds), color=PALETTE[i]) for i, m in enumerate(METHODS)]
    svg = line_chart(series, f"ENAS vs random: final {metric} per seed", xlabel="seed", ylabel=metric)
    return text + table + per_table + f'<figure class="fig">{svg}</figure>'


def report_sections(run_dir: str | Path) -> list[tuple[str, str]]:
    """Report sections for the evaluation files found in a run directory (``rank.json``, ``compare.json``)."""
    d = Path(run_dir)
    out = []
    for name, title, fn in ((RANK_JSON, "Ranking fidelity", rank_section),
                            (COMPARE_JSON, "ENAS vs random over seeds", compare_section)):
        if (d / name).exists():
            try:
                out.append((title, fn(json.loads((d / name).read_text()))))
            except (OSError, ValueError, KeyError, TypeError) as e:
                log.warning("report: %s unreadable (%s)", name, e.__class__.__name__)
    return out
