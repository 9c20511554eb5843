"""Data-parallel runs under ``torchrun``: process group, rank-0 duties, collectives and a clean teardown.

``Dist`` is plain data (rank, world size, local rank). ``init()`` reads the environment that ``torchrun`` sets
(``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) and, when there is more than one process, joins the process group:
NCCL on GPUs, gloo on CPU. Without ``torchrun`` (or with one process) it returns ``SINGLE`` and every helper
here is a no-op, so single-process behaviour is unchanged.

The search does not use DDP: every rank runs the same sampled architecture, and ``reduce_grads`` averages the
gradients of exactly the parameters that architecture used, flattened into one buffer in parameter order (one
all-reduce per step; no unused-parameter bookkeeping). ``DistBatchNorm2d`` normalises with the statistics of
the whole global batch (an autograd all-reduce of per-channel sums) and ``DistDropout`` applies the rank's rows of the global batch's
dropout mask, so a distributed search computes what a single process computes on the same global batch, up
to float rounding (``bench/rounding.py`` measures how far that rounding carries).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = Dist()


def from_env(env: dict | None = None) -> Dist:
    """The layout ``torchrun`` describes in the environment (``SINGLE`` when not under torchrun)."""
    env = os.environ if env is None else env
    world = int(env.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return SINGLE
    return Dist(rank=int(env["RANK"]), world=world, local_rank=int(env.get("LOCAL_RANK", "0")))


def backend_for(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


def init(device_setting: str = "auto") -> tuple[Dist, str | None]:
    """Join the process group when launched by torchrun with several processes.

    Returns the layout and the device string each rank must use (``cuda:LOCAL_RANK`` on GPUs, else the
    setting unchanged); ``(SINGLE, None)`` outside torchrun.
    """
    d = from_env()
    if not d.enabled:
        return d, None
    import torch.distributed as dist
    device = device_for(d, device_setting)
    use_cuda = device.startswith("cuda")
    if use_cuda:
        torch.cuda.set_device(d.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timedelta(minutes=30))
    return d, device


def device_for(d: Dist, device_setting: str) -> str:
    """The device of this rank: ``cuda:LOCAL_RANK`` on GPUs (one process per GPU), else ``cpu``."""
    if not d.enabled:
        return device_setting
    use_cuda = device_setting.startswith("cuda") or (device_setting == "auto" and torch.cuda.is_available())
    return f"cuda:{d.local_rank}" if use_cuda else "cpu"


def teardown(d: Dist, barrier: bool = True) -> None:
    """Barrier (on the normal path), then destroy the process group. Drop every DDP wrapper before calling this:
    a gloo process that exits with a live DDP object and process group sometimes aborts after its work is done."""
    if not d.enabled:
        return
    import torch.distributed as dist
    if dist.is_initialized():
        if barrier:
            with contextlib.suppress(Exception):
                dist.barrier()
        dist.destroy_process_group()


def cleanup(d: Dist, scratch=None, barrier: bool = True) -> None:
    """End of a distributed command: remove a non-main rank's scratch directory, then ``teardown``."""
    if scratch is not None:
        import shutil
        shutil.rmtree(scratch, ignore_errors=True)
    teardown(d, barrier)


def main_makes_run_dir(d: Dist, make, write):
    """Rank 0 creates the run directory (``make() -> Path``, then ``write(path)``); every rank learns the path,
    or, if rank 0 failed, every rank raises (rank 0 its own error) instead of waiting forever."""
    import torch.distributed as dist
    box: list = [None]
    err = None
    if d.is_main:
        try:
            path = make()
            write(path)
            box[0] = str(path)
        except Exception as e:  # noqa: BLE001 - re-raised below, after telling the other ranks
            err = e
    dist.broadcast_object_list(box, src=0)
    if box[0] is None:
        teardown(d, barrier=False)
        if err is not None:
            raise err
        from .rundir import RunDirError
        raise RunDirError("rank 0 could not create the run directory (see its error)")
    from pathlib import Path
    return Path(box[0])


# ------------------------------------------------------------------------------------------- collectives
def broadcast(d: Dist, t: torch.Tensor, src: int = 0) -> torch.Tensor:
    """``t`` as rank ``src`` has it (in place; a CPU tensor travels through the device under NCCL)."""
    if not d.enabled:
        return t
    import torch.distributed as dist
    dev = _comm_device()
    buf = t.to(dev).contiguous()
    dist.broadcast(buf, src)
    t.copy_(buf.to(t.device))
    return t


def all_sum(d: Dist, t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (a new tensor; ``t`` itself when single-process)."""
    if not d.enabled:
        return t
    import torch.distributed as dist
    buf = t.detach().clone()
    dist.all_reduce(buf)
    return buf


def any_true(d: Dist, flag: bool, device: torch.device) -> bool:
    if not d.enabled:
        return flag
    return bool(all_sum(d, torch.tensor(float(flag), device=device)) > 0)


def reduce_grads(d: Dist, params: list[torch.nn.Parameter], extras: torch.Tensor | None = None) -> torch.Tensor | None:
    """Average the gradients of ``params`` over ranks in one flat all-reduce, and sum ``extras`` with them.

    Every rank ran the same architecture, so the same parameters hold gradients, in the same order.
    Returns the summed ``extras`` (or None).
    """
    if not d.enabled:
        return extras
    import torch.distributed as dist
    grads = [p.grad for p in params]
    parts = [g.reshape(-1) for g in grads]
    if extras is not None:
        parts.append(extras.reshape(-1).to(grads[0].dtype if grads else extras.dtype))
    flat = torch.cat(parts)
    dist.all_reduce(flat)
    n = sum(g.numel() for g in grads)
    if grads:
        flat[:n].div_(d.world)
        torch._foreach_copy_(grads, [v.view_as(g) for v, g in zip(flat[:n].split([g.numel() for g in grads]), grads)])
    return flat[n:] if extras is not None else None


def _comm_device() -> torch.device:
    import torch.distributed as dist
    return torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")


# ------------------------------------------------------------------------------------------ batch norm
class _GlobalSum(torch.autograd.Function):
    """All-reduce (sum) whose backward is again an all-reduce (sum): every rank's loss depends on the sum."""

    @staticmethod
    def forward(ctx, x):  # noqa: D401
        import torch.distributed as dist
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, g):
        import torch.distributed as dist
        g = g.clone()
        dist.all_reduce(g)
        return g


class DistBatchNorm2d(torch.nn.BatchNorm2d):
    """BatchNorm2d with batch statistics over the global batch (all ranks), on CPU and GPU alike.

    Every rank must run the same sequence of forward passes (true in the search: same architecture, same
    phase). Only used with batch statistics (the search supernet keeps no running averages).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.track_running_stats and not self.training:
            return super().forward(x)
        c = x.shape[1]
        xf = x.float()
        gsum = _GlobalSum.apply if torch.is_grad_enabled() else _plain_sum
        # two passes (mean, then the mean square deviation), as a single process computes them: E[x^2] - E[x]^2
        # loses most digits where the variance is small next to the mean
        stats = gsum(torch.cat([xf.sum((0, 2, 3)), torch.tensor([float(x.numel() // c)], device=x.device)]))
        total = stats[-1]
        mean = stats[:c] / total
        dev = xf - mean[None, :, None, None]
        var = gsum((dev * dev).sum((0, 2, 3))) / total
        if self.track_running_stats and self.training:
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(mean.detach() * m)
                self.running_var.mul_(1 - m).add_(var.detach() * total / (total - 1).clamp_min(1) * m)
                self.num_batches_tracked.add_(1)
        y = dev * torch.rsqrt(var + self.eps)[None, :, None, None]
        if self.affine:
            y = y * self.weight[None, :, None, None] + self.bias[None, :, None, None]
        return y.to(x.dtype)


def _plain_sum(t: torch.Tensor) -> torch.Tensor:
    import torch.distributed as dist
    t = t.clone()
    dist.all_reduce(t)
    return t


class DistDropout(torch.nn.Dropout):
    """Dropout that applies this rank's rows of the mask a single process draws for the whole global batch.

    Every rank draws the global batch's mask from the global generator (seeded alike on all ranks, so they stay
    in step) and keeps its own rows. On CPU this is bit for bit the mask of ``nn.Dropout`` on the global batch
    (``empty_like(x).bernoulli_(1 - p)``, then ``div_(1 - p)``); CUDA's fused dropout draws differently.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        import torch.distributed as dist
        sizes = torch.zeros(dist.get_world_size(), dtype=torch.float64, device=_comm_device())
        rank = dist.get_rank()
        sizes[rank] = x.shape[0]
        dist.all_reduce(sizes)
        lo, total = int(sizes[:rank].sum().item()), int(sizes.sum().item())
        mask = torch.empty((total, *x.shape[1:]), dtype=x.dtype, device=x.device).bernoulli_(1.0 - self.p)
        return x * mask[lo:lo + x.shape[0]].div_(1.0 - self.p)


def use_global_batch(model: torch.nn.Module, d: Dist) -> torch.nn.Module:
    """What a search needs to compute, split over ranks, what one process computes on the global batch:
    global batch-norm statistics (``DistBatchNorm2d``) and global dropout masks (``DistDropout``)."""
    if not d.enabled:
        return model
    use_global_batch_norm(model, d)
    for parent in list(model.modules()):
        for name, m in list(parent.named_children()):
            if type(m) is torch.nn.Dropout and m.p > 0:
                new = DistDropout(m.p)
                new.train(m.training)
                setattr(parent, name, new)
    return model


def use_global_batch_norm(model: torch.nn.Module, d: Dist) -> torch.nn.Module:
    """Swap every BatchNorm2d for ``DistBatchNorm2d`` (same parameters, same names) when distributed."""
    if not d.enabled:
        return model
    for name, m in list(model.named_children()):
        if type(m) is torch.nn.BatchNorm2d:
            new = DistBatchNorm2d(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                                  track_running_stats=m.track_running_stats)
            new.weight, new.bias = m.weight, m.bias  # the same Parameter objects (an optimizer may hold them)
            new.track_running_stats = m.track_running_stats
            new.running_mean, new.running_var, new.num_batches_tracked = (m.running_mean, m.running_var,
                                                                           m.num_batches_tracked)
            new.train(m.training)
            setattr(model, name, new)
        else:
            use_global_batch_norm(m, d)
    return model


def shard(n: int, d: Dist) -> slice:
    """This rank's contiguous slice of a global batch of ``n`` (``torch.tensor_split`` sizes)."""
    q, r = divmod(n, d.world)
    lo = d.rank * q + min(d.rank, r)
    return slice(lo, lo + q + (1 if d.rank < r else 0))

