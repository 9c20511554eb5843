"""Language-model procedures: one training step, exact perplexity, the controller's reward, final training.

Models follow ``forward(tokens [T,B], hidden, arch=None, *, generator=None) -> (logits, hidden, extras)``
(``enas.models.rnn.RNNModel`` and ``LSTMModel``). Perplexity is the exponential of the exact mean cross-entropy
per token over the whole split: no per-batch capping (the reference's capped loss, bug B7, is not copied).
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Callable
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from .data.text import BPTTIterator, Corpus, batchify, bptt_batches

log = logging.getLogger(__name__)


def detach_hidden(hidden):
    """Cut the graph behind a hidden state (a tensor or nested tuples of tensors)."""
    if isinstance(hidden, torch.Tensor):
        return hidden.detach()
    return tuple(detach_hidden(h) for h in hidden)


def perplexity(mean_nll: float) -> float:
    """``exp(mean_nll)``, ``inf`` when that overflows (a diverged model), never capped."""
    try:
        return math.exp(mean_nll)
    except OverflowError:
        return math.inf


def lm_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, hidden, arch=None, *, ar_alpha: float = 0.0,
            tar_beta: float = 0.0, generator: torch.Generator | None = None):
    """Forward one BPTT segment; returns ``(loss, raw_loss, hidden)``.

    ``raw_loss`` is the mean cross-entropy per token; ``loss`` adds activation regularisation on the cell's raw
    (undropped) output, as enas_lm does: ``ar_alpha * mean(raw^2) + tar_beta * mean((raw_t - raw_(t-1))^2)``.
    (AWD-LSTM applies AR to the dropped output instead; with ``dropout_o = 0.75`` that is ~4x stronger, so
    enas_lm's alpha values assume the raw output.) The caller calls ``loss.backward()``; the returned hidden
    state is detached (truncated BPTT).
    """
    logits, hidden, extras = model(x, hidden, arch, generator=generator)
    raw_loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    loss = raw_loss
    raw = extras["raw_output"]
    if ar_alpha:
        loss = loss + ar_alpha * raw.pow(2).mean()
    if tar_beta and x.shape[0] > 1:
        loss = loss + tar_beta * (raw[1:] - raw[:-1]).pow(2).mean()
    return loss, raw_loss, detach_hidden(hidden)


@contextmanager
def _eval_mode(model: nn.Module):
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def evaluate_ppl(model: nn.Module, source: torch.Tensor, arch=None, bptt: int = 35, batch_size: int = 10) -> float:
    """Exact perplexity of ``source`` (1-D ids, batchified with ``batch_size``, or already [T,B]).

    The hidden state carries across segments; every predicted token counts once.
    """
    data = batchify(source, batch_size) if source.dim() == 1 else source
    data = data.to(_device(model))
    total, count = 0.0, 0
    with _eval_mode(model):
        hidden = model.init_hidden(data.shape[1], data.device)
        for x, y in bptt_batches(data, bptt, variable=False):
            logits, hidden, _ = model(x, hidden, arch)
            total += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="sum").item()
            count += y.numel()
    return perplexity(total / count)


def reward(model: nn.Module, x: torch.Tensor, y: torch.Tensor, hidden=None, arch=None, c: float = 80.0
           ) -> torch.Tensor:
    """The controller's reward ``c / ppl`` on one validation batch (eval mode, no gradient)."""
    with _eval_mode(model):
        if hidden is None:
            hidden = model.init_hidden(x.shape[1], x.device)
        logits, _, _ = model(x, hidden, arch)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
    return c / torch.exp(nll)


@contextmanager
def _averaged_weights(model: nn.Module, optimizer: torch.optim.Optimizer):
    """Temporarily swap in ASGD's averaged weights (a no-op for other optimizers)."""
    saved = {}
    if isinstance(optimizer, torch.optim.ASGD):
        for p in model.parameters():
            ax = optimizer.state.get(p, {}).get("ax")
            if ax is not None:
                saved[p] = p.detach().clone()
                p.data.copy_(ax)
    try:
        yield
    finally:
        for p, w in saved.items():
            p.data.copy_(w)


def _switch_to_asgd(params: list, lr: float, weight_decay: float, epoch: int) -> torch.optim.ASGD:
    log.info("switching to averaged SGD after epoch %d (lr %.4g)", epoch, lr)
    return torch.optim.ASGD(params, lr=lr, t0=0, lambd=0.0, weight_decay=weight_decay)


def train_lm(model: nn.Module, corpus: Corpus, *, epochs: int, batch_size: int, bptt: int, lr: float,
             clip: float, weight_decay: float = 0.0, lr_decay: float = 1.0, lr_decay_start: int = 1,
             lr_min: float = 0.0, asgd: bool = False, nonmono: int = 5, asgd_start: int | None = None,
             ar_alpha: float = 0.0, tar_beta: float = 0.0, arch=None, eval_batch_size: int = 10, test_batch_size: int = 1,
             seed: int = 0, max_batches: int | None = None,
             on_epoch: Callable[[dict], None] | None = None,
             on_checkpoint: Callable[[dict], None] | None = None, resume_state: dict | None = None,
             stop: Callable[[], bool] | None = None) -> dict:
    """Train one fixed language model from scratch; returns the best-validation model's perplexities.

    SGD with the per-batch lr scaled by ``seq_len / bptt`` (random BPTT lengths, AWD/enas_lm), global gradient
    norm clipping at ``clip``, and a per-epoch decay ``lr * lr_decay ** (epoch - lr_decay_start)`` from epoch
    ``lr_decay_start`` (1-based) on, floored at ``lr_min``. With ``asgd`` the optimizer switches to averaged SGD
    (``torch.optim.ASGD``, AWD's NT-ASGD trigger) once the validation loss is worse than the best of all epochs
    before the last ``nonmono``, or at the start of epoch ``asgd_start`` when given, whichever comes first;
    evaluation then uses the averaged weights. The returned model holds the weights with the best validation
    perplexity. Returns ``{"valid_ppl", "test_ppl", "best_epoch", "epochs",
    "asgd_epoch", "history"}``.
    """
    device = _device(model)
    train = batchify(corpus.train, batch_size).to(device)
    batches = BPTTIterator(train, bptt, variable=True, seed=seed)
    gen = torch.Generator(device=device).manual_seed(seed + 1)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer: torch.optim.Optimizer = torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    history: list[dict] = []
    best = {"valid_ppl": math.inf, "epoch": 0, "state": None}
    asgd_epoch = None  # the last epoch trained with plain SGD once averaging has started
    epoch_lr = lr
    first = 1
    if resume_state is not None:  # continue after the last finished epoch (see ``on_checkpoint``)
        r = resume_state
        model.load_state_dict(r["model"])
        asgd_epoch, epoch_lr, first = r["asgd_epoch"], r["epoch_lr"], r["epoch"] + 1
        if asgd_epoch is not None:
            optimizer = _switch_to_asgd(params, epoch_lr, weight_decay, asgd_epoch)
        optimizer.load_state_dict(r["optimizer"])
        batches.load_state_dict(r["batches"])
        gen.set_state(r["gen"].to(gen.device) if gen.device.type != "cpu" else r["gen"])
        torch.set_rng_state(r["torch_rng"])
        history = list(r["history"])
        best = {"valid_ppl": r["best_valid_ppl"], "epoch": r["best_epoch"], "state": r["best_state"]}
    for epoch in range(first, epochs + 1):
        if asgd and asgd_epoch is None and asgd_start is not None and epoch >= asgd_start:
            optimizer, asgd_epoch = _switch_to_asgd(params, epoch_lr, weight_decay, epoch - 1), epoch - 1
        if asgd_epoch is None:  # averaged SGD keeps the lr it started with
            epoch_lr = max(lr_min, lr * lr_decay ** max(0, epoch - lr_decay_start))
        model.train()
        hidden = model.init_hidden(batch_size, device)
        total, tokens = torch.zeros((), device=device), 0  # summed on the device: no sync per step
        for k, (x, y) in enumerate(batches):
            for g in optimizer.param_groups:
                g["lr"] = epoch_lr * x.shape[0] / bptt
            loss, raw_loss, hidden = lm_step(model, x, y, hidden, arch, ar_alpha=ar_alpha, tar_beta=tar_beta,
                                             generator=gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip:
                nn.utils.clip_grad_norm_(params, clip)
            optimizer.step()
            total += raw_loss.detach().float() * y.numel()
            tokens += y.numel()
            if max_batches is not None and k + 1 >= max_batches:
                batches.pos, batches.epoch = 0, batches.epoch + 1
                break
        with _averaged_weights(model, optimizer):
            valid_ppl = evaluate_ppl(model, corpus.valid, arch, bptt, eval_batch_size)
            if valid_ppl < best["valid_ppl"]:
                best = {"valid_ppl": valid_ppl, "epoch": epoch,
                        "state": copy.deepcopy(model.state_dict())}
        row = {"epoch": epoch, "lr": epoch_lr, "train_ppl": perplexity(total.item() / max(tokens, 1)),
               "valid_ppl": valid_ppl, "asgd": asgd_epoch is not None}
        history.append(row)
        log.info("epoch %d lr %.4g train ppl %.2f valid ppl %.2f", epoch, epoch_lr, row["train_ppl"], valid_ppl)
        if on_epoch is not None:
            on_epoch(row)
        past = [r["valid_ppl"] for r in history[:-1]]
        if (asgd and asgd_epoch is None and len(past) > nonmono
                and valid_ppl > min(past[:len(past) - nonmono])):
            optimizer, asgd_epoch = _switch_to_asgd(params, epoch_lr, weight_decay, epoch), epoch
        if on_checkpoint is not None:
            on_checkpoint({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                           "epoch_lr": epoch_lr, "asgd_epoch": asgd_epoch, "batches": batches.state_dict(),
                           "gen": gen.get_state(), "torch_rng": torch.get_rng_state(), "history": history,
                           "best_valid_ppl": best["valid_ppl"], "best_epoch": best["epoch"],
                           "best_state": best["state"]})
        if stop is not None and stop() and epoch < epochs:
            from .rundir import Stopped
            raise Stopped()
    if best["state"] is not None:
        model.load_state_dict(best["state"])
    test_ppl = evaluate_ppl(model, corpus.test, arch, bptt, test_batch_size)
    return {"valid_ppl": best["valid_ppl"], "test_ppl": test_ppl, "best_epoch": best["epoch"],
            "epochs": epochs, "asgd_epoch": asgd_epoch, "history": history}
