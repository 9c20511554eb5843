"""Language modelling as a search/training task (the recurrent space): corpus, BPTT batches, rewards.

The search loop in ``enas.search`` drives it through the same calls as the image task
(``steps_per_epoch``, ``start_epoch``, ``next_train_batch``, ``next_valid_batch``, ``fixed_valid_batches``,
``state_dict``) plus the hooks ``shared_loss``, ``reward`` and ``score``. The hidden state is carried
across training segments (truncated BPTT) and is part of the task's state, so resumes are exact.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from . import config as C
from .data.text import Corpus, batchify, get_batch, load_corpus, sample_seq_len
from .guard import skip_mask
from .lm import detach_hidden, lm_step
from .models.rnn import RNNModel

log = logging.getLogger("enas")


def _zero_where(bad: torch.Tensor, hidden):
    if isinstance(hidden, torch.Tensor):
        return skip_mask(bad, hidden)
    return tuple(_zero_where(bad, h) for h in hidden)


LOSS_WINDOW = 50  # steps of the running median that a step's loss is compared with (max_loss_ratio)
LOSS_MIN_HISTORY = 10  # steps needed before a step is rated


def _source(cfg: C.Config) -> str:
    return "pydoc" if cfg.data.source == "digits" else cfg.data.source


def lm_model(cfg_net: C.NetConfig, space, vocab_size: int, arch=None) -> RNNModel:
    n = cfg_net
    return RNNModel(space, vocab_size=vocab_size, embed_size=n.embed_size, hidden_size=n.hidden_size, arch=arch,
                    dropout_e=n.dropout_e, dropout_i=n.dropout_i, dropout_x=n.dropout_x, dropout_l=n.dropout_l,
                    dropout_o=n.dropout_o, init_range=n.init_range, output=n.rnn_output,
                    state_clip=n.rnn_state_clip, first_tanh=n.rnn_first_tanh)


def fixed_lm_model(cfg: C.Config, arch, space, *, vocab_size: int) -> RNNModel:
    return lm_model(cfg.final_net, space, vocab_size, arch)


class TextTask:
    def __init__(self, corpus: Corpus, cfg: C.Config, device: torch.device, gens: dict):
        self.cfg, self.device = cfg, device
        self.bs = cfg.shared.batch_size
        self.bptt = cfg.data.bptt
        self.train = batchify(corpus.train, self.bs).to(device)  # [T, B]
        self.valid = batchify(corpus.valid, self.bs).to(device)
        self.data_gen = gens["data"]
        self.pos = 0
        self.hidden: torch.Tensor | None = None
        self.valid_pos = 0
        self.reward_c = cfg.controller.reward_c
        # per-step training losses (raw cross-entropy, device tensors: no host read per step) of this epoch, and
        # the last LOSS_WINDOW of earlier epochs, for the spike measure ``max_loss_ratio`` (``epoch_metrics``)
        self.step_losses: list[torch.Tensor] = []
        self.loss_tail = torch.zeros(0)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil((self.train.shape[0] - 1) / self.bptt))

    def start_epoch(self) -> None:
        self.pos = 0
        self.hidden = None
        self.step_losses = []

    def next_train_batch(self):
        if self.pos >= self.train.shape[0] - 2:  # random lengths ran past the end: wrap around
            self.pos, self.hidden = 0, None
        x, y = get_batch(self.train, self.pos, sample_seq_len(self.bptt, self.data_gen, True))
        self.pos += x.shape[0]
        return x, y

    def shared_loss(self, model, arch, batch, net: C.NetConfig):
        x, y = batch
        hidden = self.hidden if self.hidden is not None else model.init_hidden(self.bs, self.device)
        o = self.cfg.shared
        loss, raw, hidden = lm_step(model, x, y, hidden, arch, ar_alpha=o.ar_alpha, tar_beta=o.tar_beta)
        self.hidden = detach_hidden(hidden)
        self.step_losses.append(raw.detach().float())
        n = torch.full((), float(y.numel()), device=y.device)  # a fill, not a host copy
        # the search loop reports "loss" (mean cross-entropy); accuracy is not meaningful here
        return loss, torch.zeros((), device=y.device), n

    def after_step(self, bad: torch.Tensor) -> None:
        """After a shared step (``bad``: 1. when it was skipped as non-finite, on the device): a skipped step
        restarts the carried hidden state from zeros, since a blown-up state would otherwise poison every
        following segment. Decided on the device, like the skip itself."""
        if self.hidden is not None:
            self.hidden = _zero_where(bad, self.hidden)
        if self.step_losses:  # a skipped step has no loss (NaN: left out of the spike measure)
            self.step_losses[-1] = torch.where(bad > 0, torch.full_like(self.step_losses[-1], math.nan),
                                               self.step_losses[-1])

    def epoch_metrics(self) -> dict:
        """Fields for the search's epoch row (read at the epoch end, a sync point anyway).

        ``max_loss_ratio``: the largest ratio of a step's training loss to the median of the ``LOSS_WINDOW``
        steps before it (across epoch boundaries; the first ``LOSS_MIN_HISTORY`` steps of a search have no
        reference and are not rated), ``max_loss_ratio_step`` the step of the epoch where it happened and
        ``max_step_loss`` the epoch's largest step loss. Skipped (non-finite) steps are left out.
        """
        if not self.step_losses:
            return {}
        cur = torch.stack(self.step_losses).cpu().double()
        tail = self.loss_tail.double()
        hist = torch.cat([tail, cur])
        best, at = math.nan, -1
        for k in range(len(cur)):
            i = len(tail) + k
            prev = hist[max(0, i - LOSS_WINDOW):i]
            prev = prev[torch.isfinite(prev)]
            v = hist[i].item()
            if len(prev) < LOSS_MIN_HISTORY or not math.isfinite(v):
                continue
            ratio = v / max(prev.median().item(), 1e-12)
            if not ratio <= best:  # also replaces the initial NaN
                best, at = ratio, k
        self.loss_tail = hist[-LOSS_WINDOW:].float()
        finite = cur[torch.isfinite(cur)]
        out = {"max_loss_ratio": None if math.isnan(best) else round(best, 4), "max_loss_ratio_step": at,
               "max_step_loss": round(finite.max().item(), 4) if len(finite) else None}
        return out

    def next_valid_batch(self):
        if self.valid_pos >= self.valid.shape[0] - 2:
            self.valid_pos = 0
        x, y = get_batch(self.valid, self.valid_pos, self.bptt)
        self.valid_pos += x.shape[0]
        return x, y

    def fixed_valid_batches(self, count: int):
        out, pos = [], 0
        for _ in range(count):
            if pos >= self.valid.shape[0] - 2:
                pos = 0
            x, y = get_batch(self.valid, pos, self.bptt)
            pos += x.shape[0]
            out.append((x, y))
        return out

    @torch.no_grad()
    def _nll(self, model, arch, batches) -> torch.Tensor:
        model.eval()
        total, count = None, 0
        for x, y in batches:
            logits, _, _ = model(x, model.init_hidden(x.shape[1], x.device), arch)
            s = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), reduction="sum")
            total = s if total is None else total + s
            count += y.numel()
        return total / count

    def reward(self, model, arch, batch) -> torch.Tensor:
        """``c / ppl`` on one validation batch (the paper's reward, c = 80)."""
        return self.reward_c / torch.exp(self._nll(model, arch, [batch]))

    def score(self, model, arch, batches, calib: list | None = None) -> torch.Tensor:
        """Derive score: ``c / ppl`` over ``batches`` (``calib`` is unused: the language models have no BN)."""
        return self.reward_c / torch.exp(self._nll(model, arch, batches))

    def calibration_batches(self, count: int) -> list:
        """No BatchNorm to recalibrate: no batches."""
        return []

    def state_dict(self) -> dict:
        losses = torch.stack(self.step_losses).cpu() if self.step_losses else torch.zeros(0)
        return {"pos": self.pos, "hidden": self.hidden, "valid_pos": self.valid_pos, "step_losses": losses,
                "loss_tail": self.loss_tail}

    def load_state_dict(self, s: dict) -> None:
        self.pos, self.valid_pos = int(s["pos"]), int(s["valid_pos"])
        self.hidden = None if s["hidden"] is None else s["hidden"].to(self.device)
        # checkpoints written before the spike measure have neither (the measure restarts)
        self.step_losses = [v.to(self.device) for v in s.get("step_losses", torch.zeros(0))]
        self.loss_tail = s.get("loss_tail", torch.zeros(0))


def make_search_task_and_model(cfg: C.Config, space, device: torch.device, gens: dict):
    corpus = load_corpus(_source(cfg), vocab_size=cfg.data.vocab_size)
    log.info("corpus %s: vocabulary %d, %d/%d/%d tokens", _source(cfg), len(corpus.vocab), len(corpus.train),
             len(corpus.valid), len(corpus.test))
    task = TextTask(corpus, cfg, device, gens)
    model = lm_model(cfg.net, space, len(corpus.vocab)).to(device)
    return task, model


BASELINES = ("lstm",)
BASELINE_JSON = "baseline.json"


def train_fixed_lm(cfg: C.Config, arch, out, *, resume: bool = False,
                   stop: Callable[[], bool] = lambda: False, baseline: str | None = None) -> dict:
    """Train a fixed recurrent cell from scratch (``lm.train_lm``) and write the run directory.

    ``baseline="lstm"`` trains instead the honest baseline for ``arch``: a one-layer tied LSTM language model
    with the parameter count of ``arch``'s fixed model (``models.rnn.matching_lstm``), the same training
    (``cfg.train``: epochs, batch, optimiser, clipping, AR/TAR, ASGD) and the same dropouts. The run directory
    records the choice in ``baseline.json`` (a resume continues the same model) and ``result.json`` carries
    ``baseline``, ``params`` (the LSTM's) and ``cell_params``.

    A checkpoint is written at every epoch end; resuming continues after the last finished epoch (the CNN
    trainings and every search also checkpoint mid-epoch, every ``search.checkpoint_every`` steps).
    """
    from . import build, spaces
    from .lm import train_lm
    from .rundir import MetricsLog, Stopped, Timer, new_run_dir, read_json, write_json
    from .models import count_params
    from . import checkpoint
    mod = spaces.get("rnn")
    state = None
    if baseline is not None and baseline not in BASELINES:
        raise C.ConfigError(f"--baseline: expected one of {', '.join(BASELINES)}, got {baseline!r}")
    if resume:
        out = Path(out)
        if (out / "result.json").exists():
            return read_json(out / "result.json")
        recorded = read_json(out / BASELINE_JSON)["model"] if (out / BASELINE_JSON).exists() else None
        if baseline is not None and baseline != recorded:
            raise C.ConfigError(f"--baseline {baseline}: the run in {out} trains "
                                f"{'the ' + recorded + ' baseline' if recorded else 'the cell itself'}")
        baseline = recorded
        state = checkpoint.load_run_state(out / "checkpoint.pt", "train-lm", "language-model training")
        if state is None and (out / "metrics.jsonl").exists():
            (out / "metrics.jsonl").unlink()
    else:
        out = new_run_dir(None if out is None else str(out), "train", "rnn")
        write_json(out / "config.json", C.to_dict(cfg))
        write_json(out / "arch.json", mod.to_dict(arch))
    device = build.resolve_device(cfg.run.device)
    build.seed_everything(cfg.run.seed + 17)
    corpus = load_corpus(_source(cfg), vocab_size=cfg.data.vocab_size)
    space = mod.space_of(arch, build.make_space(cfg))
    model = fixed_lm_model(cfg, arch, space, vocab_size=len(corpus.vocab)).to(device)
    params = cell_params = count_params(model)
    run_arch = arch
    if baseline == "lstm":
        from .models.rnn import matching_lstm
        model = matching_lstm(cell_params, len(corpus.vocab), cfg.final_net).to(device)
        params = count_params(model)
        run_arch = None  # the LSTM ignores it
        if not resume:
            write_json(out / BASELINE_JSON, {"model": "lstm", "size": model.embed_size, "params": params,
                                             "cell_params": cell_params, "cell": mod.to_dict(arch)})
    o = cfg.train
    metrics = MetricsLog(out / "metrics.jsonl", truncate_to=state["metrics_size"] if state else None)
    timer = Timer(state["elapsed"] if state else 0.0)

    def on_checkpoint(s: dict) -> None:  # every epoch end: resume continues after the last finished epoch
        checkpoint.save({"kind": "train-lm", **s, "metrics_size": metrics.size, "elapsed": timer()},
                        out / "checkpoint.pt")
    log.info("training %s language model (%d parameters%s) in %s on %s",
             "an LSTM baseline" if baseline else "rnn", params,
             f"; the cell has {cell_params}" if baseline else "", out, device)

    def on_epoch(row: dict) -> None:
        metrics.write({"kind": "epoch", **{k: v for k, v in row.items()}, "epoch": row["epoch"] - 1,
                       "time": round(timer(), 3)})

    try:
        res = train_lm(model, corpus, epochs=o.epochs, batch_size=o.batch_size, bptt=cfg.data.bptt,
                       lr=o.lr_max, clip=o.grad_clip, weight_decay=o.weight_decay,
                       lr_decay=o.lr_decay if o.lr_schedule == "exp" else 1.0,
                       lr_decay_start=o.lr_decay_start, lr_min=o.lr_min if o.lr_schedule == "exp" else 0.0,
                       asgd=o.asgd, ar_alpha=o.ar_alpha, tar_beta=o.tar_beta, arch=run_arch,
                       eval_batch_size=min(o.eval_batch_size, 10), test_batch_size=1, seed=cfg.run.seed,
                       on_epoch=on_epoch, on_checkpoint=on_checkpoint, resume_state=state, stop=stop)
    except Stopped:
        raise Stopped(out, "train") from None
    finally:
        metrics.close()
    result = {"space": "rnn", "arch": mod.to_dict(arch), "valid_ppl": res["valid_ppl"], "test_ppl": res["test_ppl"],
              "test_metric": res["test_ppl"], "metric": "perplexity", "params": params, "epochs": o.epochs,
              "best_epoch": res["best_epoch"], "wall_time_s": round(timer(), 1), "device": str(device),
              "dataset": _source(cfg), "vocab_size": len(corpus.vocab)}
    if baseline:
        result.update({"baseline": baseline, "cell_params": cell_params, "lstm_size": model.embed_size})
    torch.save(model.state_dict(), out / "model.pt")
    write_json(out / "result.json", result)
    log.info("test perplexity %.2f (%d parameters)", res["test_ppl"], params)
    return result
