"""A sync-free shared-weight step, proposed for ``enas.search.shared_step`` and measured against it here.

Differences from ``search.shared_step`` (same arithmetic for every finite step):

1. no ``model.train()`` per step (a walk over every module of the supernet): the mode is set once per phase;
2. the parameter list is built once, not by ``model.parameters()`` (another module walk) every step;
3. the non-finite check does not read the device: ``torch._amp_foreach_non_finite_check_and_unscale_``
   sets a device flag after clipping, and a **fused** SGD skips its update on the device when the flag is
   set (``optimizer.found_inf``, the mechanism ``GradScaler`` uses). The fused kernel needs every parameter
   to hold a momentum buffer, so they are created as zeros up front; with ``dampening = 0`` this is the
   same arithmetic as torch's lazy first-step buffer (``buf = grad``). Consecutive/total skip counters stay
   on the device and are read at logging time (where the loop synchronises anyway);
4. the sample count is made with ``torch.full`` (a fill on the device) instead of ``torch.tensor(...,
   device=cuda)`` (a host-to-device copy that synchronises);
5. the epoch's permutation is moved to the device once per epoch, not sliced on the host and copied every
   step (``ImageTask.next_train_batch`` does ``perm[a:b].to(device)``, a synchronising copy on CUDA).

``FastStep(run).step(arch)`` is a drop-in for ``search.shared_step(run, arch)`` in the benchmarks.
"""

from __future__ import annotations

import torch

from enas.tasks import classification_loss


def fused_sgd(params: list[torch.nn.Parameter], o, device: torch.device) -> torch.optim.Optimizer:
    kw = dict(lr=o.lr_max, momentum=o.momentum, nesterov=o.nesterov and o.momentum > 0,
              weight_decay=o.weight_decay)
    opt = torch.optim.SGD(params, fused=True, **kw)
    if o.momentum > 0:
        for p in params:
            opt.state[p]["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
    return opt


class FastStep:
    def __init__(self, run, *, fused: bool = True):
        self.run = run
        self.params = list(run.model.parameters())
        dev = run.device
        self.fused = fused
        if fused:
            lr = run.opt.param_groups[0]["lr"]
            self.opt = fused_sgd(self.params, run.cfg.shared, dev)
            for g in self.opt.param_groups:
                g["lr"] = lr
        else:
            self.opt = run.opt
        self.found_inf = torch.zeros(1, device=dev)
        self.one = torch.ones(1, device=dev)
        self.skipped_run = torch.zeros((), device=dev)
        self.skipped_total = torch.zeros((), device=dev)
        self._perm_src = None
        self._perm_dev = None
        run.model.train()

    def _train_batch(self):
        """``ImageTask.next_train_batch`` with the permutation kept on the device."""
        from enas.data import augment as A
        task = self.run.task
        if task.perm is not self._perm_src:
            self._perm_src, self._perm_dev = task.perm, task.perm.to(task.device)
        bs = task.batch_size
        idx = self._perm_dev[task.pos * bs:(task.pos + 1) * bs]
        task.pos += 1
        x = A.to_float(task.train.x[idx], task.mean, task.std)
        x = A.augment(x, task.aug_gen, pad=task.pad, flip=task.flip, cutout_size=task.cutout)
        if task.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, task.train.y[idx]

    def step(self, arch) -> None:
        run = self.run
        o = run.cfg.shared
        task = run.task
        if hasattr(task, "perm") and (task.pos + 1) * task.batch_size > len(task.perm):
            task.start_epoch()
        batch = task.next_train_batch() if hasattr(task, "shared_loss") else self._train_batch()
        with run.autocast():
            if hasattr(task, "shared_loss"):
                loss, correct, count = task.shared_loss(run.model, arch, batch, run.cfg.net)
            else:
                x, y = batch
                logits, aux = run.model(x, arch)
                loss = classification_loss(logits, aux, y, run.cfg.net.aux_weight)
                correct = (logits.detach().argmax(-1) == y).sum().float()
                count = torch.full((), float(len(y)), device=y.device)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        grads = [p.grad for p in self.params if p.grad is not None]
        params = [p for p in self.params if p.grad is not None]
        if o.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, o.grad_clip, foreach=True)
        self.found_inf.zero_()
        torch._amp_foreach_non_finite_check_and_unscale_(grads, self.found_inf, self.one)
        bad = torch.maximum(self.found_inf[0], (~torch.isfinite(loss.detach())).float())
        if self.fused:
            self.found_inf.copy_(bad.reshape(1))
            self.opt.found_inf = self.found_inf
            self.opt.step()
        else:  # foreach SGD cannot skip on the device; the current code's host check
            if not bool(bad == 0):
                return
            self.opt.step()
        self.skipped_run = (self.skipped_run + 1) * bad
        self.skipped_total = self.skipped_total + bad
        keep = 1.0 - bad
        s = run.sums
        ld = torch.nan_to_num(loss.detach().float()) * keep
        s["loss"] += ld * count
        s["correct"] += correct * keep
        s["count"] += count * keep
        s["ep_loss"] += ld * count
        s["ep_correct"] += correct * keep
        s["ep_count"] += count * keep


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for g in opt.param_groups:
        g["lr"] = lr


__all__ = ["FastStep", "fused_sgd", "set_lr"]
