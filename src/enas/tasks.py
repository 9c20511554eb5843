"""Image classification as a search/training task: data on the device, batches, losses and rewards.

A task owns the data and every piece of data-order state (epoch permutation, position, the validation
cursor) and exposes it as ``state_dict`` / ``load_state_dict`` so that a resumed run continues exactly.
Random choices come from the generators passed in (``data`` on CPU for orders, ``aug`` on the device).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from . import bn
from .config import Config
from .data import augment as A
from .data.images import ImageDataset, channel_stats, load_images, split_validation


@dataclass
class Split:
    x: torch.Tensor  # uint8 [N, C, H, W] on the device
    y: torch.Tensor  # int64 [N] on the device


def load_image_splits(cfg: Config, generator: torch.Generator, *, with_valid: bool) -> tuple[ImageDataset, Split, Split | None, Split]:
    d = cfg.data
    ds = load_images(d.source, image_size=d.image_size or None, seed=cfg.run.seed,
                     limit_per_class=d.limit_per_class or None)
    if with_valid and d.valid > 0:
        n_valid = d.valid if d.valid < 1 else int(d.valid)
        tx, ty, vx, vy = split_validation(ds.train_x, ds.train_y, n_valid, generator)
        return ds, Split(tx, ty), Split(vx, vy), Split(ds.test_x, ds.test_y)
    return ds, Split(ds.train_x, ds.train_y), None, Split(ds.test_x, ds.test_y)


class ImageTask:
    """Training batches (shuffled, augmented), validation batches (cycled, never augmented), evaluation."""

    def __init__(self, train: Split, valid: Split | None, test: Split, *, batch_size: int, eval_batch_size: int,
                 pad: int, flip: bool, cutout: int, device: torch.device, data_gen: torch.Generator,
                 aug_gen: torch.Generator, channels_last: bool = False, num_classes: int = 10,
                 autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
                 reward_recalibrate: int = 0, calib_seed: int = 0, valid_batch_size: int = 0):
        self.device = device
        # scoring a sampled architecture (controller reward, derive): see ``reward`` and ``score``
        self.autocast = autocast
        self.reward_recalibrate = reward_recalibrate  # calibration batches before each reward (0: none)
        self.calib_seed = calib_seed
        self._calib: dict[int, list] = {}
        self.train = Split(train.x.to(device), train.y.to(device))
        self.valid = Split(valid.x.to(device), valid.y.to(device)) if valid is not None else None
        self.test = Split(test.x.to(device), test.y.to(device))
        mean, std = channel_stats(train.x)
        self.mean, self.std = mean.to(device), std.to(device)
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.valid_batch_size = valid_batch_size or batch_size  # images per controller reward
        self.pad, self.flip, self.cutout = pad, flip, cutout
        self.data_gen, self.aug_gen = data_gen, aug_gen
        self.channels_last = channels_last
        self.num_classes = num_classes
        self.perm = torch.zeros(0, dtype=torch.long)
        self.pos = 0
        self.valid_perm = torch.zeros(0, dtype=torch.long)
        self.valid_pos = 0
        # under torchrun: this rank's share of every global minibatch (the layout of enas.distributed.Dist)
        self.rank, self.world = 0, 1
        self.global_count = 0  # size of the last global training batch

    def _shard(self, t: torch.Tensor) -> torch.Tensor:
        if self.world == 1:
            return t
        n = len(t)
        q, r = divmod(n, self.world)
        lo = self.rank * q + min(self.rank, r)
        return t[lo:lo + q + (1 if self.rank < r else 0)]

    # -------------------------------------------------------------------------------- training batches
    @property
    def steps_per_epoch(self) -> int:
        return max(1, len(self.train.y) // self.batch_size)  # drop the last partial batch

    def start_epoch(self) -> None:
        self.perm = torch.randperm(len(self.train.y), generator=self.data_gen).to(self.device)  # one copy per epoch
        self.pos = 0

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        x = A.to_float(x, self.mean, self.std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def next_train_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.perm[self.pos * self.batch_size:(self.pos + 1) * self.batch_size]  # on the device
        self.pos += 1
        x = A.to_float(self.train.x[idx], self.mean, self.std)
        x = A.augment(x, self.aug_gen, pad=self.pad, flip=self.flip, cutout_size=self.cutout)
        self.global_count = len(idx)
        if self.world > 1:  # every rank augments the whole global batch (same random draws), then keeps its shard
            x, idx = self._shard(x), self._shard(idx)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, self.train.y[idx]

    # ------------------------------------------------------------------------------ validation batches
    def next_valid_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next un-augmented validation minibatch (``valid_batch_size`` images), reshuffled every pass."""
        v = self.valid if self.valid is not None else self.test
        n = len(v.y)
        bs = min(self.valid_batch_size, n)
        if self.valid_pos + bs > len(self.valid_perm):
            self.valid_perm = torch.randperm(n, generator=self.data_gen).to(self.device)
            self.valid_pos = 0
        idx = self.valid_perm[self.valid_pos:self.valid_pos + bs]
        self.valid_pos += bs
        idx = self._shard(idx)
        return self._prep(v.x[idx]), v.y[idx]

    def fixed_valid_batches(self, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``count`` validation batches in a fixed order: every architecture sees the same data.

        The order is a fixed shuffle (seeded by ``calib_seed``, no data-order state used): a validation set
        keeps the order of its source, and an image folder is sorted by class, so its first batches would hold
        one or two classes and score every architecture by how it treats those.
        """
        v = self.valid if self.valid is not None else self.test
        n = len(v.y)
        bs = min(self.batch_size, n)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(self.calib_seed + 7919)).to(v.y.device)
        out = []
        for k in range(count):
            lo = (k * bs) % n
            idx = order[lo:lo + bs]
            out.append((self._prep(v.x[idx]), v.y[idx]))
        return out

    def eval_batches(self, split: str):
        s = {"valid": self.valid, "test": self.test, "train": self.train}[split]
        if s is None:
            return
        for lo in range(0, len(s.y), self.eval_batch_size):
            yield self._prep(s.x[lo:lo + self.eval_batch_size]), s.y[lo:lo + self.eval_batch_size]

    # ------------------------------------------------------------------------------- search-loop hooks
    def shared_loss(self, model, arch, batch, net) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Loss of one training batch (with the auxiliary head), correct predictions and sample count."""
        x, y = batch
        logits, aux = model(x, arch)
        loss = classification_loss(logits, aux, y, net.aux_weight)
        return loss, (logits.detach().argmax(-1) == y).sum().float(), torch.full((), float(len(y)), device=y.device)

    def after_step(self, bad: torch.Tensor) -> None:
        """Nothing to reset after a skipped step (``bad`` = 1. on the device): image batches carry no state."""

    # ------------------------------------------------------------- scoring a sampled architecture
    def calibration_batches(self, count: int) -> list:
        """``count`` fixed un-augmented training batches for BN recalibration (made once per count; no
        data-order state is consumed)."""
        if count not in self._calib:
            self._calib[count] = bn.calibration_inputs(self.train.x, count, self.batch_size, self._prep,
                                                       seed=self.calib_seed)
        return self._calib[count]

    def recalibrate(self, model, arch, batches: list) -> None:
        """Re-estimate the supernet's BN statistics for ``arch`` (``enas.bn.recalibrate``); leaves it in eval
        mode."""
        def forward(x):
            with self.autocast():
                model(x, arch)
        bn.recalibrate(model, forward, batches)

    def reward(self, model, arch, batch) -> torch.Tensor:
        """The controller's reward: accuracy on one validation batch. With running BN statistics they are
        either re-estimated for ``arch`` first (``reward_recalibrate`` batches) or, as in the reference, the
        batch statistics are used (the running ones are stale for this architecture)."""
        if bn.uses_running_stats(model):
            if self.reward_recalibrate > 0:
                self.recalibrate(model, arch, self.calibration_batches(self.reward_recalibrate))
            else:
                with bn.batch_stats(model):
                    return accuracy(model, arch, [batch], self.autocast)
        return accuracy(model, arch, [batch], self.autocast)

    def score(self, model, arch, batches, calib: list | None = None) -> torch.Tensor:
        """Derive score: accuracy over ``batches``; with ``calib`` (training batches) the BN statistics are
        re-estimated for ``arch`` first, otherwise the batch statistics are used."""
        if calib and bn.has_bn(model):
            self.recalibrate(model, arch, calib)
            return accuracy(model, arch, batches, self.autocast)
        with bn.batch_stats(model):
            return accuracy(model, arch, batches, self.autocast)

    # ----------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict:
        return {"perm": self.perm, "pos": self.pos, "valid_perm": self.valid_perm, "valid_pos": self.valid_pos}

    def load_state_dict(self, s: dict) -> None:
        self.perm, self.pos = s["perm"].to(self.device), int(s["pos"])
        self.valid_perm, self.valid_pos = s["valid_perm"].to(self.device), int(s["valid_pos"])


def classification_loss(logits: torch.Tensor, aux: torch.Tensor | None, y: torch.Tensor,
                        aux_weight: float) -> torch.Tensor:
    loss = F.cross_entropy(logits.float(), y)
    if aux is not None and aux_weight > 0:
        loss = loss + aux_weight * F.cross_entropy(aux.float(), y)
    return loss


@torch.no_grad()
def accuracy(model: torch.nn.Module, arch, batches, autocast) -> torch.Tensor:
    """Accuracy (a 0-dim tensor, no host sync) of ``arch`` over ``batches``."""
    correct = None
    total = 0
    for x, y in batches:
        with autocast():
            logits, _ = model(x, arch)
        c = (logits.argmax(-1) == y).sum()
        correct = c if correct is None else correct + c
        total += len(y)
    return correct.float() / max(total, 1)
