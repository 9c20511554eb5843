"""Batch-norm statistics of a supernet: per-architecture recalibration.

A supernet's BatchNorm layers are shared by every architecture, so running averages collected while training
many sampled architectures describe none of them ("stale statistics"). Two remedies:

* **batch statistics** (the reference ENAS; ``build.use_batch_stats``): every forward pass, in train and eval mode,
  normalises with the statistics of the batch being scored;
* **recalibration** (``search.bn_recalibrate = N > 0``): the supernet keeps running statistics, and before an
  architecture is scored they are reset and re-estimated from ``N`` training batches passed through *that*
  architecture (BatchNorm layers in train mode, everything else in eval mode, no gradient, cumulative average:
  ``momentum=None``); scoring then runs in eval mode with those statistics.

``batch_stats(model)`` is a context manager that temporarily switches a running-statistics model back to batch
statistics (used for the controller's reward when recalibrating it is off).
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator

import torch
from torch import nn

_BN = nn.modules.batchnorm._BatchNorm


def bn_layers(model: nn.Module) -> list[_BN]:
    return [m for m in model.modules() if isinstance(m, _BN)]


def has_bn(model: nn.Module) -> bool:
    return bool(bn_layers(model))


def keep_running_stats(model: nn.Module) -> nn.Module:
    """Give every BatchNorm running statistics (created if missing, e.g. after ``use_batch_stats``) accumulated as a
    cumulative average (``momentum=None``). Returns ``model``."""
    for m in bn_layers(model):
        if m.running_mean is None or m.running_var is None:
            dev = m.weight.device if m.weight is not None else None
            m.register_buffer("running_mean", torch.zeros(m.num_features, device=dev))
            m.register_buffer("running_var", torch.ones(m.num_features, device=dev))
            m.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long, device=dev))
        m.track_running_stats = True
        m.momentum = None
    return model


def uses_running_stats(model: nn.Module) -> bool:
    return any(m.track_running_stats and m.running_mean is not None for m in bn_layers(model))


@torch.no_grad()
def recalibrate(model: nn.Module, forward: Callable[[torch.Tensor], object], batches: Iterable[torch.Tensor]) -> None:
    """Reset every BatchNorm's running statistics and re-estimate them from ``batches``.

    ``forward(x)`` runs the model for the architecture being scored (e.g. ``lambda x: model(x, arch)``). Only the
    BatchNorm layers are put in train mode (dropout and drop-path stay off); the model is left in eval mode.
    """
    layers = bn_layers(model)
    if not layers:
        return
    keep_running_stats(model)
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.train()
    try:
        for x in batches:
            forward(x)
    finally:
        model.eval()


@contextlib.contextmanager
def batch_stats(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily normalise with the current batch's statistics (eval mode included), then restore the running
    statistics untouched."""
    saved = []
    for m in bn_layers(model):
        saved.append((m, m.track_running_stats, m.running_mean, m.running_var))
        m.track_running_stats = False
        m.running_mean = None
        m.running_var = None
    try:
        yield model
    finally:
        for m, track, mean, var in saved:
            m.track_running_stats, m.running_mean, m.running_var = track, mean, var


def calibration_inputs(train_x: torch.Tensor, count: int, batch_size: int, prep: Callable[[torch.Tensor], torch.Tensor],
                       seed: int = 0) -> list[torch.Tensor]:
    """``count`` fixed, un-augmented training batches (the same for every architecture; drawn with their own
    generator so that the search's data order is not disturbed)."""
    n = len(train_x)
    g = torch.Generator().manual_seed(10007 + seed)
    idx = torch.randperm(n, generator=g)
    bs = min(batch_size, n)
    out = []
    for k in range(count):
        sel = idx[(k * bs) % n:(k * bs) % n + bs].to(train_x.device)
        out.append(prep(train_x[sel]))
    return out
