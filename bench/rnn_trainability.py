"""Trainability of the recurrent supernet's shared weights (issue #17): default vs paper mode, at equal steps.

For each mode (a preset: ``rnn-default`` clamps the cell's state, ``rnn-paper`` is the paper's search cell) and
seed, on the chosen text data (PTB-format directory), with the mode's net, optimiser and BPTT settings:

1. **supernet**: ``--steps`` SGD steps (lr ``shared.lr_max``, clip ``shared.grad_clip``, the carried hidden state
   and the random BPTT lengths of the search: ``enas.text_task.TextTask``), one uniformly sampled cell per step.
   Reported: the training perplexity of the last 50 steps, the largest step loss and the largest ratio of a
   step's loss to the running median of the 50 steps before it (``max_loss_ratio``, the search's own measure).
2. **fixed**: the same for ``--fixed-archs`` random cells, each trained alone as a fixed model (same data order).
3. **spread**: validation perplexity (the whole validation split) of ``--archs`` uniform cells with the shared
   weights: mean and standard deviation between cells, next to the fixed cells' validation perplexity.
4. **reward SNR**: for the same cells, the reward ``c / ppl`` on two consecutive validation batches (as the
   controller draws them) and ``enas.search.reward_snr``: between-cell covariance over batch noise.

One torch thread. Writes JSON (``--json``) and prints a markdown table (``--markdown``, or to ``--table FILE``).

    python bench/rnn_trainability.py --data DIR --seeds 0,1 --steps 200 --markdown \\
        data.vocab_size=2000 shared.batch_size=64 data.bptt=35
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch

from enas import build
from enas.config import ConfigError, load_config
from enas.data.text import TextDataError, load_corpus
from enas.lm import evaluate_ppl
from enas.search import reward_snr
from enas.spaces import rnn as R
from enas.text_task import TextTask, lm_model

MODES = ("rnn-default", "rnn-paper")
TABLE_KEYS = ("supernet_train_ppl", "max_loss_ratio", "max_step_loss", "fixed_train_ppl", "valid_ppl_mean",
              "valid_ppl_sd", "fixed_valid_ppl", "reward_snr")
LAST = 50  # training steps the training perplexity averages


def train(model, task: TextTask, cfg, steps: int, archs) -> dict:
    """``steps`` SGD steps of ``model`` on ``task``'s training batches, ``archs(k)`` the cell of step k."""
    o = cfg.shared
    opt = torch.optim.SGD(model.parameters(), lr=o.lr_max, weight_decay=o.weight_decay)
    task.start_epoch()
    losses = []
    model.train()
    for k in range(steps):
        batch = task.next_train_batch()
        loss, _, _ = task.shared_loss(model, archs(k), batch, cfg.net)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), o.grad_clip if o.grad_clip > 0 else math.inf)
        bad = (~torch.isfinite(loss.detach()) | ~torch.isfinite(norm)).float()
        if not bad.item():
            opt.step()
        task.after_step(bad)
        losses.append(task.step_losses[-1].item())
    spikes = task.epoch_metrics()
    finite = [v for v in losses[-LAST:] if math.isfinite(v)]
    return {"train_ppl": math.exp(min(50.0, statistics.fmean(finite))) if finite else math.inf,
            "max_loss_ratio": spikes.get("max_loss_ratio"), "max_step_loss": spikes.get("max_step_loss")}


def run_one(mode: str, seed: int, a) -> dict:
    cfg = load_config(mode, overrides=[f"data.source={a.data}", f"run.seed={seed}", "run.device=cpu",
                                       *a.overrides])
    corpus = load_corpus(a.data, vocab_size=cfg.data.vocab_size)
    space = build.make_space(cfg)
    rng = random.Random(seed)
    t0 = time.perf_counter()

    def task():
        return TextTask(corpus, cfg, torch.device("cpu"), {"data": build.make_generator(seed * 1000 + 1)})

    torch.manual_seed(seed)
    sup = lm_model(cfg.net, space, len(corpus.vocab))
    step_archs = [R.sample_uniform(space, rng) for _ in range(a.steps)]
    s = train(sup, task(), cfg, a.steps, lambda k: step_archs[k])
    fixed = []
    for _ in range(a.fixed_archs):
        arch = R.sample_uniform(space, rng)
        torch.manual_seed(seed)
        m = lm_model(cfg.net, space, len(corpus.vocab), arch)
        f = train(m, task(), cfg, a.steps, lambda k: arch)
        f["valid_ppl"] = evaluate_ppl(m, corpus.valid, arch, cfg.data.bptt, 10)
        fixed.append(f)
    archs = [R.sample_uniform(space, rng) for _ in range(a.archs)]
    valid = [evaluate_ppl(sup, corpus.valid, arch, cfg.data.bptt, 10) for arch in archs]
    t = task()
    first, second = [], []
    for arch in archs:
        b1, b2 = t.next_valid_batch(), t.next_valid_batch()
        first.append(t.reward(sup, arch, b1))
        second.append(t.reward(sup, arch, b2))
    finite = [v for v in valid if math.isfinite(v)]
    return {"mode": mode, "seed": seed, "steps": a.steps,
            "supernet_train_ppl": s["train_ppl"], "max_loss_ratio": s["max_loss_ratio"],
            "max_step_loss": s["max_step_loss"],
            "fixed_train_ppl": statistics.fmean(f["train_ppl"] for f in fixed) if fixed else math.nan,
            "fixed_max_loss_ratio": max((f["max_loss_ratio"] or 0) for f in fixed) if fixed else math.nan,
            "fixed_valid_ppl": statistics.fmean(f["valid_ppl"] for f in fixed) if fixed else math.nan,
            "valid_ppl_mean": statistics.fmean(finite) if finite else math.inf,
            "valid_ppl_sd": statistics.stdev(finite) if len(finite) > 1 else math.nan,
            "valid_ppl_nonfinite": len(valid) - len(finite),
            "reward_snr": reward_snr(torch.stack(first), torch.stack(second)),
            "seconds": round(time.perf_counter() - t0, 1)}


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for mode in dict.fromkeys(r["mode"] for r in rows):
        rs = [r for r in rows if r["mode"] == mode]
        row = {"mode": mode, "seeds": len(rs), "seconds": statistics.fmean(r["seconds"] for r in rs)}
        for k in TABLE_KEYS:
            v = [r[k] for r in rs if r[k] is not None]
            row[k] = statistics.fmean(v) if v else math.nan
            row[k + "_max"] = max(v) if v else math.nan
        out.append(row)
    return out


def markdown(summary: list[dict], a) -> str:
    head = ("| mode | supernet train ppl (last 50 steps) | max loss / running median (worst seed) | largest step loss "
            "| fixed cells' train ppl | valid ppl, uniform cells, shared weights: mean (SD between) "
            "| fixed cells' valid ppl | reward SNR | s / seed |")
    lines = [head, "|" + "---|" * 9]
    for r in summary:
        lines.append(f"| {r['mode']} | {r['supernet_train_ppl']:.1f} | {r['max_loss_ratio']:.3g} "
                     f"({r['max_loss_ratio_max']:.3g}) | {r['max_step_loss_max']:.3g} | {r['fixed_train_ppl']:.1f} "
                     f"| {r['valid_ppl_mean']:.1f} ({r['valid_ppl_sd']:.1f}) | {r['fixed_valid_ppl']:.1f} "
                     f"| {r['reward_snr']:.2f} | {r['seconds']:.0f} |")
    lines.append("")
    lines.append(f"{a.steps} steps per model, seeds {a.seeds}, {a.archs} uniform cells, {a.fixed_archs} fixed cells; "
                 f"overrides: {' '.join(a.overrides) or 'none'}; torch {torch.__version__}, "
                 f"Python {platform.python_version()}, 1 thread.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="a PTB-format directory (ptb.train.txt, ptb.valid.txt, ...)")
    ap.add_argument("--modes", default=",".join(MODES), help="comma-separated presets (default: both modes)")
    ap.add_argument("--seeds", default="0", help="comma-separated seeds")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--archs", type=int, default=20)
    ap.add_argument("--fixed-archs", type=int, default=2)
    ap.add_argument("--json", help="write every row and the summary here")
    ap.add_argument("--table", help="write the markdown table here")
    ap.add_argument("--markdown", action="store_true", help="print the markdown table")
    ap.add_argument("overrides", nargs="*", metavar="section.key=value")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
        if a.steps < LAST or a.archs < 3 or a.fixed_archs < 0:
            raise ValueError(f"--steps >= {LAST}, --archs >= 3 and --fixed-archs >= 0 are needed")
        rows = [run_one(m, s, a) for m in a.modes.split(",") for s in seeds]
    except (ConfigError, TextDataError, ValueError) as e:
        print(f"rnn_trainability: {e}", file=sys.stderr)
        return 2
    summary = summarise(rows)
    if a.json:
        Path(a.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=2, default=str) + "\n")
    table = markdown(summary, a)
    if a.table:
        Path(a.table).write_text(table)
    if a.markdown or not (a.json or a.table):
        print(table, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
