"""Final training: one fixed architecture, trained from scratch, evaluated on the test set.

``train_fixed(cfg, arch, out)`` builds the fixed network of ``cfg.final_net`` for ``arch``, trains it with
``cfg.train`` (Nesterov SGD, cosine schedule with restarts, gradient clipping, cutout, auxiliary head,
drop-path ramped over training), checkpoints like the search does, and writes ``model.pt`` (a plain
``state_dict``), ``arch.json`` and ``result.json``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable

import torch

from . import build, checkpoint, config as C, spaces
from . import distributed as D
from .guard import StepGuard, skip_mask
from .models import count_params  # (also re-exported: it was defined here)
from .rundir import (MetricsLog, Stopped, Timer, created_top, discard_new_run_dir, new_run_dir,
                     read_json, write_json)
from .tasks import ImageTask, accuracy, classification_loss, load_image_splits

log = logging.getLogger("enas")
CKPT = "checkpoint.pt"


def _final_space(cfg: C.Config, arch):
    """The space an architecture lives in (its size is implied by the architecture itself)."""
    space_of = getattr(spaces.get(cfg.space), "space_of", None)
    return build.make_space(cfg) if space_of is None else space_of(arch, build.make_space(cfg))


def train_fixed(cfg: C.Config, arch, out: str | Path | None = None, *, resume: bool = False,
                stop: Callable[[], bool] = lambda: False, dist: D.Dist | None = None, sync_bn: bool = False,
                baseline: str | None = None) -> dict:
    """Train ``arch`` from scratch. Under torchrun (several processes) this is plain data-parallel training
    (DDP; each rank takes its shard of every global minibatch; only rank 0 writes); ``dist`` is passed by a
    caller that already joined the process group, and ``sync_bn`` (GPUs only) uses SyncBatchNorm.
    ``baseline="lstm"`` (recurrent space only) trains the tied LSTM of ``arch``'s parameter count instead
    (``text_task.train_fixed_lm``)."""
    if baseline is not None and not spaces.is_text(cfg.space):
        raise C.ConfigError(f"--baseline {baseline}: only for the recurrent space (--space rnn), not {cfg.space}")
    if dist is None and D.from_env().enabled:  # launched by torchrun: this call owns the process group
        d, _ = D.init(cfg.run.device)
        try:
            result = _train_fixed(cfg, arch, out, resume=resume, stop=stop, dist=d, sync_bn=sync_bn,
                                  baseline=baseline)
        except BaseException:
            D.teardown(d, barrier=False)
            raise
        D.teardown(d)  # the DDP wrapper is gone with _train_fixed's frame
        return result
    return _train_fixed(cfg, arch, out, resume=resume, stop=stop, dist=dist or D.SINGLE, sync_bn=sync_bn,
                        baseline=baseline)


def _train_fixed(cfg: C.Config, arch, out: str | Path | None, *, resume: bool, stop: Callable[[], bool],
                 dist: D.Dist, sync_bn: bool, baseline: str | None = None) -> dict:
    mod = spaces.get(cfg.space)
    if spaces.is_text(cfg.space) and dist.enabled:
        raise C.ConfigError("distributed training (torchrun) supports the image spaces only")
    if spaces.is_text(cfg.space):
        from .text_task import train_fixed_lm
        return train_fixed_lm(cfg, arch, out, resume=resume, stop=stop, baseline=baseline)
    state = None
    existed, top = out is not None and Path(out).exists(), created_top(out)
    if resume:
        out = Path(out)
        if (out / "result.json").exists() and not (out / CKPT).exists():
            return read_json(out / "result.json")
        state = checkpoint.load_run_state(out / CKPT, "train", "training")
        if state is not None and state.get("done"):
            return read_json(out / "result.json")
        if state is None:  # stopped before its first checkpoint: start again, in the same directory
            log.warning("%s: no checkpoint yet; starting the training from the beginning", out)
    elif not dist.enabled:
        out = new_run_dir(None if out is None else str(out), "train", cfg.space)
    else:
        out = D.main_makes_run_dir(dist, lambda: new_run_dir(None if out is None else str(out), "train", cfg.space),
                                   lambda o: None)
    scratch = None
    if dist.enabled:
        cfg = C.replace(cfg, run=C.replace(cfg.run, device=D.device_for(dist, cfg.run.device),
                                           progress=cfg.run.progress and dist.is_main))
        if not dist.is_main:  # only rank 0 writes to the run directory; the others to a scratch one
            import tempfile
            out = scratch = Path(tempfile.mkdtemp(prefix=f"enas-rank{dist.rank}-"))
            existed, top = False, None
        local_stop = stop
        stop = lambda: D.any_true(dist, local_stop(), torch.device("cpu"))  # noqa: E731 - every rank agrees
    if state is None:  # arch.json first: config.json marks a directory as a run that --resume continues
        write_json(out / "arch.json", mod.to_dict(arch))
        write_json(out / "config.json", C.to_dict(cfg))
    device = build.resolve_device(cfg.run.device)
    build.seed_everything(cfg.run.seed + 17)
    seed = cfg.run.seed
    gens = {"data": build.make_generator(seed * 1000 + 11), "aug": build.make_generator(seed * 1000 + 12, device)}
    try:
        ds, train, valid, test = load_image_splits(cfg, gens["data"], with_valid=cfg.data.valid > 0)
    except Exception:
        if not resume:  # bad data: leave no half-made run directory behind
            discard_new_run_dir(out, existed, top)
        raise
    chl = build.channels_last(cfg.run.channels_last, device, cfg.space, cfg.final_net.channels)
    pad = cfg.data.pad if cfg.data.pad >= 0 else ds.image_size // 8
    o = cfg.train
    task = ImageTask(train, valid, test, batch_size=o.batch_size, eval_batch_size=o.eval_batch_size, pad=pad,
                     flip=cfg.data.flip, cutout=o.cutout, device=device, data_gen=gens["data"],
                     aug_gen=gens["aug"], channels_last=chl, num_classes=ds.num_classes)
    task.rank, task.world = dist.rank, dist.world
    space = _final_space(cfg, arch)
    model = build.make_cnn(cfg.space, space, cfg.final_net, num_classes=ds.num_classes,
                           in_channels=ds.in_channels, arch=arch).to(device)
    if chl:
        model = model.to(memory_format=torch.channels_last)
    params = count_params(model)
    if dist.enabled and sync_bn:
        if device.type != "cuda":
            raise C.ConfigError("SyncBatchNorm runs on GPUs only (NCCL); drop --sync-bn on CPU")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    forward = model
    if dist.enabled:  # plain DDP; unused parameters allowed (some fixed networks hold weights a step may not use:
        # without it DDP skips the first gradient sync silently and fails on the second step)
        forward = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None, find_unused_parameters=True)
    forward = torch.compile(forward) if cfg.run.compile == "on" else forward
    # compiled: the drop-path probability as a device value, so the graph does not change as it ramps up
    p_dev = torch.zeros((), device=device) if cfg.run.compile == "on" and cfg.final_net.drop_path > 0 else None
    guard = StepGuard(device, cfg.run.max_nonfinite, "train.lr_max or train.grad_clip")
    opt = build.sgd(model.parameters(), o, device, found_inf=guard.found_inf)
    plist = [q for g in opt.param_groups for q in g["params"]]
    autocast = build.autocast_factory(cfg, device)
    metrics = MetricsLog(out / "metrics.jsonl", truncate_to=state["metrics_size"] if state else 0,
                         tensorboard_dir=out / "tensorboard")
    epoch, step, gstep, timer = 0, 0, 0, Timer()
    sums = {k: torch.zeros((), device=device) for k in ("loss", "correct", "count")}
    # A skipped step's forward pass has already updated the BatchNorm running statistics (maybe to inf/nan).
    # The skip is only known when the device is read, so the statistics are kept as of the last rollback
    # point with no skipped step since (rollback points: every run.log_every global steps and each epoch end,
    # fixed by the step count so a resumed run makes the same ones) and restored at the next rollback point
    # that finds skips: at most run.log_every steps of running-average updates are lost, and only then.
    named_bufs = [(n, b) for n, b in model.named_buffers() if b.is_floating_point()]
    bufs = [b for _, b in named_bufs]
    bn_good = {"bufs": [b.clone() for b in bufs], "skips": 0}  # the kept statistics, guard.total when kept
    if state is not None:
        model.load_state_dict(state["model"])
        build.load_optimizer_state(opt, state["opt"])  # keeps the fused implementation (older checkpoints: foreach)
        task.load_state_dict(state["task"])
        checkpoint.set_rng_state(state["rng"], gens)
        epoch, step, gstep = state["epoch"], state["step"], state["global_step"]
        sums = {k: v.to(device) for k, v in state["sums"].items()}
        guard.load_checkpoint(state)
        if "bn_good" in state:
            for b, v in zip(bn_good["bufs"], state["bn_good"]["bufs"]):
                b.copy_(v)
            bn_good["skips"] = state["bn_good"]["skips"]
        elif bufs:  # a checkpoint written before the guard
            torch._foreach_copy_(bn_good["bufs"], bufs)
            bn_good["skips"] = guard.total
        timer = Timer(state["elapsed"])

    def sync() -> None:
        """Read the device: log skipped steps, stop the run past run.max_nonfinite in a row."""
        guard.sync(f"epoch {epoch} step {step}", str(out / CKPT))

    def bn_rollback_point() -> None:
        """Restore the kept BN statistics if steps were skipped since they were kept, else keep the current."""
        sync()
        if not bufs:
            return
        if guard.total > bn_good["skips"]:
            torch._foreach_copy_(bufs, bn_good["bufs"])
            bn_good["skips"] = guard.total
        else:
            torch._foreach_copy_(bn_good["bufs"], bufs)

    def save(done: bool = False) -> None:
        sync()  # never write a checkpoint of a run that should have stopped
        if not dist.is_main:
            return
        weights = model.state_dict()
        if guard.total > bn_good["skips"]:  # skipped steps since the kept BN statistics: checkpoint those
            weights.update({n: v for (n, _), v in zip(named_bufs, bn_good["bufs"])})
        checkpoint.save({"kind": "train", "model": weights, "opt": opt.state_dict(),
                         "task": task.state_dict(), "rng": checkpoint.rng_state(gens), "epoch": epoch,
                         "step": step, "global_step": gstep, "sums": sums, "metrics_size": metrics.size,
                         "guard": guard.state_dict(), "nonfinite_total": guard.total, "bn_good": bn_good,
                         "elapsed": timer(),
                         "done": done}, out / CKPT)

    steps = task.steps_per_epoch
    total = max(1, o.epochs * steps)
    pbar = None
    if cfg.run.progress:
        from tqdm import tqdm
        pbar = tqdm(total=total, initial=gstep, desc="train", unit="step", leave=False, dynamic_ncols=True)
    log.info("training %s (%d parameters) in %s on %s", cfg.space, params, out, device)
    try:
        while epoch < o.epochs:
            if step == 0:
                task.start_epoch()
                for g in opt.param_groups:
                    g["lr"] = build.lr_at(epoch, o)
            model.train()  # once per epoch: a walk over every module
            while step < steps:
                x, y = task.next_train_batch()
                p = cfg.final_net.drop_path * min(1.0, gstep / total)
                if p_dev is not None:  # compiled: a device value, so the graph does not change as p ramps up
                    p = p_dev.fill_(p)
                loss, logits, bad = fixed_step(forward, opt, plist, guard, autocast, x, y, p,
                                               aux_weight=cfg.final_net.aux_weight, grad_clip=o.grad_clip)
                count = skip_mask(bad, torch.full((), float(len(y)), device=y.device))
                sums["loss"] += skip_mask(bad, loss.detach().float()) * count
                sums["correct"] += skip_mask(bad, (logits.detach().argmax(-1) == y).sum().float())
                sums["count"] += count
                step += 1
                gstep += 1
                if pbar is not None:
                    pbar.update(1)
                if gstep % cfg.run.log_every == 0:
                    bn_rollback_point()
                every = cfg.search.checkpoint_every
                if stop() or (every and gstep % every == 0 and step < steps):
                    save()
                    if stop():
                        raise Stopped(out, "train")
            bn_rollback_point()
            n = sums["count"].clamp_min(1)
            row = {"kind": "epoch", "epoch": epoch, "global_step": gstep, "loss": (sums["loss"] / n).item(),
                   "acc": (sums["correct"] / n).item(), "lr": opt.param_groups[0]["lr"],
                   "nonfinite_steps": guard.total}
            if task.valid is not None:
                model.eval()
                row["valid_acc"] = accuracy(model, None, task.eval_batches("valid"), autocast).item()
            row["time"] = round(timer(), 3)
            metrics.write(row)
            log.info("train epoch %d/%d  loss %.3f  acc %.3f%s", epoch + 1, o.epochs, row["loss"], row["acc"],
                     f"  valid {row['valid_acc']:.3f}" if "valid_acc" in row else "")
            for v in sums.values():
                v.zero_()
            epoch += 1
            step = 0
            save()
            if stop():
                raise Stopped(out, "train")
        model.eval()
        test_acc = accuracy(model, None, task.eval_batches("test"), autocast).item()
        result = {"space": cfg.space, "arch": mod.to_dict(arch), "test_acc": test_acc, "test_metric": test_acc,
                  "metric": "accuracy", "params": params, "epochs": o.epochs, "wall_time_s": round(timer(), 1),
                  "device": str(device), "dataset": ds.name, "num_classes": ds.num_classes,
                  "in_channels": ds.in_channels, "image_size": ds.image_size}
        # what inputs the model expects: (x / 255 - mean) / std per channel, from the training images
        result["normalize"] = {"mean": [float(v) for v in task.mean], "std": [float(v) for v in task.std]}
        from .environment import environment
        result["environment"] = environment(cfg.run.seed, device)  # machine, torch, CUDA, commit, seed
        torch.save(model.state_dict(), out / "model.pt.tmp")
        os.replace(out / "model.pt.tmp", out / "model.pt")
        write_json(out / "result.json", result)
        save(done=True)
        log.info("test accuracy %.4f (%d parameters)", test_acc, params)
        return result
    finally:
        if pbar is not None:
            pbar.close()
        metrics.close()
        forward = None  # drop the DDP wrapper before the process group goes  # noqa: F841
        if scratch is not None:
            import shutil
            shutil.rmtree(scratch, ignore_errors=True)


def fixed_step(forward, opt: torch.optim.Optimizer, params: list, guard: StepGuard, autocast, x: torch.Tensor,
               y: torch.Tensor, drop_path_prob: float | torch.Tensor, *, aux_weight: float, grad_clip: float):
    """One training step of a fixed CNN: forward (with the auxiliary head and drop-path), backward, clipping,
    the device-side non-finite check, and the fused SGD step that skips itself when the check fails (no host
    sync). Returns (loss, logits, bad) as device tensors."""
    with autocast():
        logits, aux = forward(x, drop_path_prob=drop_path_prob)
        loss = classification_loss(logits, aux, y, aux_weight)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    grads = [q for q in params if q.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(grads, grad_clip if grad_clip > 0 else float("inf"), foreach=True)
    bad = guard.check(loss, norm)
    opt.step()
    return loss, logits, bad
