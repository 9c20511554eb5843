"""The ENAS search: shared-weight phase, controller phase, derive, and the loop that alternates them.

``search(cfg, out, resume, stop)`` is the public entry point. Every epoch:

1. **shared**: one pass over the training data; each minibatch trains the supernet on a fresh architecture.
   The controller is frozen during this phase, so the epoch's architectures are sampled up front in one
   batched controller pass (one host synchronisation per epoch instead of one per step).
2. **controller**: ``train_steps`` Adam updates; each samples ``num_aggregate`` architectures, rewards each
   with its accuracy on the next un-augmented validation minibatch (+ entropy bonus), and applies REINFORCE
   with a moving-average baseline.
3. **derive** (small): sample a few architectures, score them on the same validation batches, write the best
   to ``best_arch.json``.

Checkpoints hold every piece of state (weights, optimizers, baseline, counters, data order, all generator
states, the epoch's sampled architectures and running metric sums), so a resumed run continues exactly.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from . import benchmarks, bn, build, checkpoint, config as C, reinforce, spaces
from . import distributed as D
from .guard import StepGuard, skip_mask
from .stats import collapse_warning, policy_op_freq
from .rundir import (MetricsLog, Stopped, Timer, created_top, discard_new_run_dir, new_run_dir,
                     read_json, truncate, write_json)
from .tasks import ImageTask, load_image_splits

log = logging.getLogger("enas")

CKPT = "checkpoint.pt"
ARCHS = "archs.jsonl"


@dataclass
class SearchRun:
    """The mutable state of one search (plain attributes; phases are free functions below)."""

    cfg: C.Config
    out: Path
    space: object
    mod: object
    device: torch.device
    model: torch.nn.Module
    controller: torch.nn.Module
    uniform: torch.nn.Module
    opt: torch.optim.Optimizer
    ctrl_opt: torch.optim.Optimizer | None
    task: object
    gens: dict
    autocast: Callable
    metrics: MetricsLog
    stop: Callable[[], bool]
    timer: Timer
    baseline: torch.Tensor
    epoch: int = 0
    step: int = 0  # next shared step within the epoch
    global_step: int = 0
    phase: str = "shared"  # next phase to run in this epoch: shared | controller | end
    epoch_actions: torch.Tensor | None = None
    epoch_archs: list = field(default_factory=list)
    sums: dict = field(default_factory=dict)  # running metric sums (tensors on the device)
    guard: StepGuard | None = None  # device-side skip of non-finite steps (enas.guard)
    best: dict | None = None
    pbar: object = None
    dist: D.Dist = D.SINGLE  # under torchrun: this rank's place (enas.distributed)
    stop_agreed: bool = False  # under torchrun: a stop some rank asked for, agreed at the last collective
    local_stop: Callable[[], bool] | None = None
    table: object = None  # the space's ground-truth table (enas.benchmarks), when it has one and it was found


# ------------------------------------------------------------------------------------------------ setup
def _zero_sums(device: torch.device) -> dict:
    z = lambda: torch.zeros((), device=device)  # noqa: E731
    return {"loss": z(), "correct": z(), "count": z(), "ep_loss": z(), "ep_correct": z(), "ep_count": z()}


def setup(cfg: C.Config, out: Path, stop: Callable[[], bool], state: dict | None = None,
          dist: D.Dist = D.SINGLE) -> SearchRun:
    device = build.resolve_device(cfg.run.device)
    build.seed_everything(cfg.run.seed)
    space = build.make_space(cfg)
    mod = spaces.get(cfg.space)
    seed = cfg.run.seed
    gens = {"data": build.make_generator(seed * 1000 + 1), "ctrl": build.make_generator(seed * 1000 + 2, device),
            "aug": build.make_generator(seed * 1000 + 3, device), "derive": build.make_generator(seed * 1000 + 4, device)}
    if spaces.is_text(cfg.space):
        if dist.enabled:
            raise C.ConfigError("distributed search (torchrun) supports the image spaces only")
        from .text_task import make_search_task_and_model  # language-model pieces
        task, model = make_search_task_and_model(cfg, space, device, gens)
    else:
        ds, train, valid, test = load_image_splits(cfg, gens["data"], with_valid=True)
        chl = build.channels_last(cfg.run.channels_last, device, cfg.space, cfg.net.channels)
        pad = cfg.data.pad if cfg.data.pad >= 0 else ds.image_size // 8
        task = ImageTask(train, valid, test, batch_size=cfg.shared.batch_size,
                         eval_batch_size=cfg.shared.eval_batch_size, pad=pad, flip=cfg.data.flip,
                         cutout=cfg.shared.cutout, device=device, data_gen=gens["data"], aug_gen=gens["aug"],
                         channels_last=chl, num_classes=ds.num_classes,
                         autocast=build.autocast_factory(cfg, device),
                         reward_recalibrate=cfg.search.bn_recalibrate if cfg.controller.reward_bn_recalibrate else 0,
                         calib_seed=cfg.run.seed, valid_batch_size=cfg.controller.reward_batch_size)
        task.rank, task.world = dist.rank, dist.world  # each rank takes its shard of every global minibatch
        model = build.make_cnn(cfg.space, space, cfg.net, num_classes=ds.num_classes, in_channels=ds.in_channels)
        model = D.use_global_batch(model, dist)  # batch statistics, dropout masks of the global batch (no-op single)
        if cfg.search.bn_recalibrate > 0:  # running statistics, re-estimated per scored architecture (enas.bn)
            bn.keep_running_stats(model)
        else:
            build.use_batch_stats(model)
        model = model.to(device)
        if chl:
            model = model.to(memory_format=torch.channels_last)
    controller = build.make_controller(cfg, space, device)
    uniform = build.make_controller(C.replace(cfg, controller=C.replace(cfg.controller, kind="random")), space, device)
    guard = StepGuard(device, cfg.run.max_nonfinite, "shared.lr_max or shared.grad_clip")
    opt = build.sgd(model.parameters(), cfg.shared, device, found_inf=guard.found_inf)
    ctrl_opt = None
    if any(True for _ in controller.parameters()):
        c = cfg.controller
        # fused: one kernel per update, and its step counter lives on the device (no host read per step)
        ctrl_opt = torch.optim.Adam(controller.parameters(), lr=c.lr, betas=(c.beta1, 0.999), eps=c.eps,
                                    fused=True)
    # append-only files go back to their size at the checkpoint (to nothing when starting afresh); the cut
    # waits for the first use of the log (search() commits it, and archs.jsonl, once everything is built)
    size = state["metrics_size"] if state is not None and dist.is_main else 0
    tb = out / "tensorboard"
    metrics = MetricsLog(out / "metrics.jsonl", truncate_to=size, tensorboard_dir=tb)
    run = SearchRun(cfg=cfg, out=out, space=space, mod=mod, device=device, model=model, controller=controller,
                    uniform=uniform, opt=opt, ctrl_opt=ctrl_opt, task=task, gens=gens,
                    autocast=build.autocast_factory(cfg, device), metrics=metrics, stop=stop, timer=Timer(),
                    baseline=torch.zeros((), device=device), sums=_zero_sums(device), dist=dist, guard=guard)
    run.table = _ground_truth_table(cfg)
    if state is not None:
        restore(run, state)
    return run


def _ground_truth_table(cfg: C.Config):
    """The space's benchmark table, or None (no benchmark for this space, or its file is not found: a warning)."""
    if not benchmarks.has_table(cfg.space):
        return None
    try:
        return benchmarks.table_for(cfg.space, cfg.search.benchmark or None)
    except benchmarks.BenchmarkError as e:
        log.warning("no ground truth for this search: %s", e)
        return None


# ------------------------------------------------------------------------------------------ checkpoints
def state_dict(run: SearchRun) -> dict:
    return {
        "kind": "search", "config": C.to_dict(run.cfg),
        "model": run.model.state_dict(), "controller": run.controller.state_dict(),
        "opt": run.opt.state_dict(), "ctrl_opt": run.ctrl_opt.state_dict() if run.ctrl_opt else None,
        "baseline": run.baseline, "epoch": run.epoch, "step": run.step, "global_step": run.global_step,
        "phase": run.phase, "epoch_actions": run.epoch_actions, "task": run.task.state_dict(),
        "rng": checkpoint.rng_state(run.gens), "sums": dict(run.sums), "guard": run.guard.state_dict(),
        "nonfinite_total": run.guard.total, "best": run.best, "metrics_size": run.metrics.size,
        "archs_size": (run.out / ARCHS).stat().st_size if (run.out / ARCHS).exists() else 0,
        "elapsed": run.timer(),
    }


def restore(run: SearchRun, s: dict) -> None:
    run.model.load_state_dict(s["model"])
    run.controller.load_state_dict(s["controller"])
    build.load_optimizer_state(run.opt, s["opt"])  # keeps the fused implementation (older checkpoints: foreach)
    if run.ctrl_opt is not None and s["ctrl_opt"] is not None:
        build.load_optimizer_state(run.ctrl_opt, s["ctrl_opt"])
    run.baseline = s["baseline"].to(run.device)
    run.epoch, run.step, run.global_step, run.phase = s["epoch"], s["step"], s["global_step"], s["phase"]
    run.epoch_actions = s["epoch_actions"]
    if run.epoch_actions is not None:
        run.epoch_archs = decode(run, run.epoch_actions)
    run.task.load_state_dict(s["task"])
    checkpoint.set_rng_state(s["rng"], run.gens)
    run.sums = {k: v.to(run.device) for k, v in s["sums"].items()}
    run.guard.load_checkpoint(s)
    run.best = s["best"]
    run.timer = Timer(s["elapsed"])


def sync_guard(run: SearchRun) -> None:
    """Read the skip counters (a sync point): log skipped steps, stop past ``run.max_nonfinite`` in a row."""
    run.guard.sync(f"epoch {run.epoch} step {run.step}", str(run.out / CKPT))


def save(run: SearchRun) -> None:
    sync_guard(run)  # never write a checkpoint of a run that should have stopped
    if not run.dist.is_main:  # under torchrun only rank 0 writes
        return
    checkpoint.save(state_dict(run), run.out / CKPT)


# ---------------------------------------------------------------------------------------------- phases
def decode(run: SearchRun, actions: torch.Tensor) -> list:
    return [run.mod.arch_from_actions(a, run.space) for a in actions.tolist()]


def _policy(run: SearchRun) -> torch.nn.Module:
    return run.uniform if run.epoch < run.cfg.controller.warmup_epochs else run.controller


def _shared_policy(run: SearchRun) -> torch.nn.Module:
    """Who picks the shared phase's architectures: the controller (the paper), or uniform sampling
    (``search.shared_sampling=uniform``: every op keeps being trained, so the controller's favourites cannot
    win only because they were trained more)."""
    return run.uniform if run.cfg.search.shared_sampling == "uniform" else _policy(run)


def start_epoch(run: SearchRun) -> None:
    steps = run.task.steps_per_epoch
    run.task.start_epoch()
    with torch.no_grad():
        run.epoch_actions = _shared_policy(run)(steps, generator=run.gens["ctrl"]).actions.cpu()
    # every rank samples (keeping gens["ctrl"] in step); rank 0's architectures are the ones all ranks run
    D.broadcast(run.dist, run.epoch_actions)
    run.epoch_archs = decode(run, run.epoch_actions)
    lr = build.lr_at(run.epoch, run.cfg.shared)
    for g in run.opt.param_groups:
        g["lr"] = lr


def shared_step(run: SearchRun, arch) -> None:
    o = run.cfg.shared
    if not run.model.training:  # model.train() walks every module: only when the mode changes
        run.model.train()
    batch = run.task.next_train_batch()
    with run.autocast():
        loss, correct, count = run.task.shared_loss(run.model, arch, batch, run.cfg.net)
    run.opt.zero_grad(set_to_none=True)
    if run.dist.enabled:
        loss, correct, count = _backward_global(run, loss, correct, count)
    else:
        loss.backward()
    # the optimizer already lists the parameters (walking the supernet's modules every step costs ms)
    params = [p for g in run.opt.param_groups for p in g["params"] if p.grad is not None]
    norm = torch.nn.utils.clip_grad_norm_(params, o.grad_clip if o.grad_clip > 0 else float("inf"), foreach=True)
    # no host sync: a non-finite step sets the flag the fused optimizer reads, and is skipped on the device
    bad = run.guard.check(loss, norm)
    run.opt.step()
    run.task.after_step(bad)  # e.g. the text task restarts a carried hidden state that has blown up
    s = run.sums
    ld = skip_mask(bad, loss.detach().float())
    correct, count = skip_mask(bad, correct), skip_mask(bad, count)
    s["loss"] += ld * count
    s["correct"] += correct
    s["count"] += count
    s["ep_loss"] += ld * count
    s["ep_correct"] += correct
    s["ep_count"] += count


def _backward_global(run: SearchRun, loss, correct, count):
    """Under torchrun: the gradient of the global batch's mean loss, the same on every rank.

    The local loss is weighted by the shard's share of the global batch (times the world size, since the
    gradients are averaged), so that the sum over ranks is the single-process loss; loss, correct and count
    travel in the same all-reduce as the gradients, with this rank's stop request.
    """
    d = run.dist
    (loss * (count * d.world / run.task.global_count)).backward()
    # the optimizer already lists the parameters (walking the supernet's modules every step costs ms)
    params = [p for g in run.opt.param_groups for p in g["params"] if p.grad is not None]
    extras = torch.stack([loss.detach().float() * count, correct.float(), count.float(),
                          torch.tensor(float(run.local_stop()), device=count.device)])
    tot = D.reduce_grads(d, params, extras)
    run.stop_agreed = run.stop_agreed or bool(tot[3] > 0)
    return tot[0] / tot[2], tot[1], tot[2]


def train_shared(run: SearchRun) -> None:
    steps = run.task.steps_per_epoch
    while run.step < steps:
        shared_step(run, run.epoch_archs[run.step])
        run.step += 1
        run.global_step += 1
        if run.pbar is not None:
            run.pbar.update(1)
        if run.global_step % run.cfg.run.log_every == 0:
            _log_interval(run)
        every = run.cfg.search.checkpoint_every
        if run.stop() or (every and run.global_step % every == 0 and run.step < steps):
            save(run)
            if run.stop():
                raise Stopped()


def _log_interval(run: SearchRun) -> None:
    sync_guard(run)
    s = run.sums
    n = s["count"].clamp_min(1)
    row = {"kind": "shared", "epoch": run.epoch, "step": run.step, "global_step": run.global_step,
           "loss": (s["loss"] / n).item(), "acc": (s["correct"] / n).item(), "lr": run.opt.param_groups[0]["lr"]}
    run.metrics.write(row)
    for k in ("loss", "correct", "count"):
        s[k].zero_()


def reward_of(run: SearchRun, arch, batch) -> torch.Tensor:
    """The controller's reward for ``arch`` on one validation batch (the task decides: accuracy, 80/ppl)."""
    return run.task.reward(run.model, arch, batch)


def calibration_batches(run: SearchRun, count: int) -> list:
    """``count`` fixed training batches for BN recalibration (none for a model without BN)."""
    return run.task.calibration_batches(count)


def recalibrate_for(run: SearchRun, arch, batches: list) -> None:
    """Re-estimate the supernet's BN statistics for ``arch``; leaves it in eval mode."""
    run.task.recalibrate(run.model, arch, batches)


REFERENCE_ARCHS = 2  # uniform architectures per controller update in the uniform reference


def _uniform_reference(run: SearchRun, update: int, batches: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Rewards of a few uniformly sampled architectures on the controller's validation batches (architecture j
    on batch j, and again on batch j+1 for the noise estimate): ``REFERENCE_ARCHS`` per update, so the
    reference costs at most 4 rewards per update. The sample is drawn from a generator seeded by the update's
    position, so it needs no state of its own (and resumes exactly)."""
    seed = run.cfg.run.seed * 1000 + 7 + 100_003 * (run.epoch * max(1, run.cfg.controller.train_steps) + update)
    gen = build.make_generator(seed, run.device)
    n = min(REFERENCE_ARCHS, len(batches))
    archs = decode(run, run.uniform(n, generator=gen).actions)
    shifted = batches[1:] + batches[:1]
    first = torch.stack([reward_of(run, a, b) for a, b in zip(archs, batches)])
    second = torch.stack([reward_of(run, a, b) for a, b in zip(archs, shifted)])
    return first, second


def reward_snr(first: torch.Tensor, second: torch.Tensor) -> float:
    """Signal-to-noise ratio of a reward: the variance between architectures (the covariance of each
    architecture's rewards on two batches) over the variance of the batch noise (half the variance of their
    difference). Below 1 the batch decides the reward more than the architecture does."""
    a, b = first.double(), second.double()
    if len(a) < 3:
        return math.nan
    signal = ((a - a.mean()) * (b - b.mean())).sum() / (len(a) - 1)
    noise = (a - b).var() / 2
    return (signal / noise).item() if noise > 0 else math.inf


def train_controller(run: SearchRun) -> dict:
    c = run.cfg.controller
    stats = {"reward": [], "entropy": [], "loss": [], "skip_kl": [], "skips": []}
    if run.ctrl_opt is None or run.epoch < c.warmup_epochs or c.train_steps == 0:
        return {}
    run.model.eval()
    run.controller.train()
    reference = run.cfg.search.uniform_reference and not run.dist.enabled
    ref_first, ref_second, sampled = [], [], []
    for update in range(c.train_steps):
        sample = run.controller(c.num_aggregate, generator=run.gens["ctrl"])
        archs = decode(run, sample.actions)
        sampled.append(sample.actions)
        with torch.no_grad():
            batches = [run.task.next_valid_batch() for _ in archs]
            if run.dist.enabled:  # each rank scores its shard of each validation minibatch; counts are summed
                n = torch.tensor([float(len(b[1])) for b in batches], device=run.device)
                acc = torch.stack([reward_of(run, a, b) for a, b in zip(archs, batches)])
                acc = D.all_sum(run.dist, torch.cat([acc * n, n]))
                acc = acc[:len(archs)] / acc[len(archs):]
            else:
                acc = torch.stack([reward_of(run, a, b) for a, b in zip(archs, batches)])
            if reference:
                first, second = _uniform_reference(run, update, batches)
                ref_first.append(first)
                ref_second.append(second)
        rewards = acc + c.entropy_weight * sample.entropy.detach()
        baselines, run.baseline = reinforce.ema_baselines(rewards, run.baseline, c.baseline_decay)
        loss = reinforce.policy_loss(sample.log_prob, rewards, baselines, sample.skip_kl, c.skip_weight)
        run.ctrl_opt.zero_grad(set_to_none=True)
        loss.backward()
        if run.dist.enabled:  # identical already (same rewards, same samples); averaged against float drift
            cps = [p for p in run.controller.parameters() if p.grad is not None]
            st = D.reduce_grads(run.dist, cps, torch.tensor([float(run.local_stop())], device=run.device))
            run.stop_agreed = run.stop_agreed or bool(st[0] > 0)
        run.ctrl_opt.step()
        stats["reward"].append(acc.mean().detach())
        stats["entropy"].append(sample.entropy.mean().detach())
        stats["loss"].append(loss.detach())
        stats["skip_kl"].append(sample.skip_kl.mean().detach())
        stats["skips"].append(sample.skip_count.mean().detach())
    out = {k: torch.stack(v).mean().item() for k, v in stats.items()}
    out["op_freq"] = op_frequencies(run, torch.cat(sampled).cpu())  # the policy's, whoever trains the weights
    if ref_first:  # the same weights and batches, uniform architectures: is the controller ahead of chance?
        first, second = torch.cat(ref_first), torch.cat(ref_second)
        out["uniform_reward"] = first.mean().item()
        out["reward_snr"] = reward_snr(first, second)
    return out


@torch.no_grad()
def derive(run: SearchRun, n: int, generator: torch.Generator) -> list[dict]:
    """Sample ``n`` architectures from the policy, score each on the same validation batches, best first."""
    run.model.eval()
    batches = run.task.fixed_valid_batches(run.cfg.search.derive_batches)
    actions = _policy(run)(n, generator=generator).actions
    archs = decode(run, actions)
    n = run.cfg.search.bn_recalibrate
    calib = calibration_batches(run, n) if n > 0 else None
    scores = torch.stack([_score(run, a, batches, calib) for a in archs]).tolist()
    table = [{"score": s, "actions": a, "arch": run.mod.to_dict(arch)}
             for s, a, arch in zip(scores, actions.tolist(), archs)]
    table.sort(key=lambda r: -r["score"])
    return table


def _score(run: SearchRun, arch, batches, calib: list | None = None) -> torch.Tensor:
    """``arch``'s derive score on ``batches``; with ``calib`` (training batches) its BN statistics are
    re-estimated first, otherwise the batch statistics are used."""
    return run.task.score(run.model, arch, batches, calib)


def op_frequencies(run: SearchRun, actions: torch.Tensor) -> dict:
    names = run.mod.candidate_names(run.space)
    cols = [i for i, d in enumerate(run.mod.decisions(run.space)) if d.kind == "op"]
    counts = torch.bincount(actions[:, cols].flatten(), minlength=len(names)).float()
    freq = (counts / counts.sum().clamp_min(1)).tolist()
    return {name: round(f, 4) for name, f in zip(names, freq)}


def end_epoch(run: SearchRun, ctrl: dict) -> None:
    sync_guard(run)
    s = run.sums
    n = s["ep_count"].clamp_min(1)
    row = {"kind": "epoch", "epoch": run.epoch, "global_step": run.global_step,
           "loss": (s["ep_loss"] / n).item(), "acc": (s["ep_correct"] / n).item(),
           "lr": run.opt.param_groups[0]["lr"], "baseline": run.baseline.item(),
           "nonfinite_steps": run.guard.total}
    if spaces.is_text(run.cfg.space):
        row["ppl"] = math.exp(min(row["loss"], 50.0))
        del row["acc"]
    row.update({f"ctrl_{k}": v for k, v in ctrl.items()})
    row["op_freq"] = op_frequencies(run, run.epoch_actions)
    epoch_metrics = getattr(run.task, "epoch_metrics", None)  # e.g. the text task's max_loss_ratio (spikes)
    if epoch_metrics is not None:
        row.update(epoch_metrics())
    if run.table is not None:  # mean ground truth of the architectures the shared phase trained this epoch
        ds = run.cfg.search.benchmark_dataset
        row["sampled_truth"] = sum(run.table.accuracy(a, ds) for a in run.epoch_archs) / len(run.epoch_archs)
    alarm = collapse_warning(policy_op_freq(row) or {})
    if alarm:
        row["collapse_warning"] = alarm
        log.warning("epoch %d: %s", run.epoch + 1, alarm)
    if run.cfg.search.epoch_derive_samples > 0:
        table = derive(run, run.cfg.search.epoch_derive_samples, run.gens["derive"])
        top = table[0]
        row["derive_best"] = top["score"]
        if run.table is not None:
            row["derive_truth"] = run.table.accuracy(top["arch"]["string"], run.cfg.search.benchmark_dataset)
        # the latest epoch's derive, not the best score so far: scores of different epochs come from different
        # shared weights and are not comparable
        run.best = {"score": top["score"], "epoch": run.epoch, "arch": top["arch"]}
        write_json(run.out / "best_arch.json", top["arch"])
        with open(run.out / ARCHS, "a") as f:
            import json
            f.write(json.dumps({"epoch": run.epoch, "score": top["score"], "arch": top["arch"]}) + "\n")
    row["time"] = round(run.timer(), 3)
    run.metrics.write(row)
    for k in ("ep_loss", "ep_correct", "ep_count"):
        s[k].zero_()
    quality = f"ppl {row['ppl']:.1f}" if "ppl" in row else f"acc {row['acc']:.3f}"
    msg = (f"epoch {run.epoch + 1}/{run.cfg.shared.epochs}  loss {row['loss']:.3f}  {quality}"
           f"  reward {ctrl.get('reward', float('nan')):.3f}  baseline {row['baseline']:.3f}"
           f"  entropy {ctrl.get('entropy', float('nan')):.2f}")
    if "derive_best" in row:
        msg += f"  derive {row['derive_best']:.3f}"
    log.info(msg)


# ------------------------------------------------------------------------------------------------- loop
def run_epochs(run: SearchRun) -> None:
    cfg = run.cfg
    pbar = None
    if cfg.run.progress:
        from tqdm import tqdm
        total = cfg.shared.epochs * run.task.steps_per_epoch
        pbar = tqdm(total=total, initial=run.global_step, desc="search", unit="step", leave=False,
                    dynamic_ncols=True)
    run.pbar = pbar
    try:
        while run.epoch < cfg.shared.epochs:
            if run.phase == "shared":
                if run.step == 0:
                    start_epoch(run)
                train_shared(run)
                run.phase = "controller"
                save(run)
                if run.stop():
                    raise Stopped()
            ctrl = train_controller(run)
            # the epoch_archs archive the epoch's op frequencies before being replaced
            end_epoch(run, ctrl)
            run.epoch += 1
            run.step = 0
            run.phase = "shared"
            save(run)
            if run.stop():
                raise Stopped()
    finally:
        if pbar is not None:
            pbar.close()


def search(cfg: C.Config, out: str | Path | None = None, *, resume: str | Path | None = None,
           stop: Callable[[], bool] = lambda: False) -> dict:
    """Run (or resume) a search, derive the best architecture and, if ``search.retrain``, train it.

    Returns the summary written to ``result.json``, plus ``run_dir`` (the run directory; not in the file). The
    HTML report is the caller's (``report.search_report``: ``enas search``, ``api.search``). The run directory
    is locked while this runs (a second writer gets RunInUse); a resume verifies the checkpoint (or falls back
    to ``.prev``) and cuts the logs back only once everything is built, so a resume that fails changes nothing.
    """
    from . import rundir
    before = rundir.held_locks()
    try:
        if resume is not None:
            rundir.lock_run(resume)  # before anything is read: no other process is writing it (rank 0 only)
        saved = C.from_dict(read_json(Path(resume) / "config.json")) if resume is not None else cfg
        if saved.controller.reward == "table":  # controller only: the benchmark's table is the reward
            if D.from_env().enabled:  # nothing to split: no shared weights, a table lookup per reward
                raise C.ConfigError("controller.reward=table trains no shared weights and runs in one process: "
                                    "start it without torchrun")
            from .table_search import table_search
            return table_search(cfg, out, resume=resume, stop=stop)
        state = None
        fresh = resume is None
        existed, top = out is not None and Path(out).exists(), created_top(out)
        dist = D.from_env()
        if dist.enabled:  # under torchrun: join the process group first (every rank), on the saved device if resuming
            dist, dev = D.init(saved.run.device)
        if resume is not None:
            out = Path(resume)
            cfg = saved
            # identity, payload shape and log sizes verified (else .prev); nothing written yet
            state = checkpoint.load_run_state(out / CKPT, "search", "search")
            if state is None:  # stopped before its first checkpoint: start again, in the same directory
                log.warning("%s: no checkpoint yet; starting the search from the beginning", out)
        elif not dist.enabled:
            out = new_run_dir(None if out is None else str(out), "search", cfg.space)
            write_json(out / "config.json", C.to_dict(cfg))
        else:
            want = None if out is None else str(out)
            out = D.main_makes_run_dir(dist, lambda: new_run_dir(want, "search", cfg.space),
                                       lambda o: write_json(o / "config.json", C.to_dict(cfg)))
        real_out, scratch = out, None
        if dist.enabled:
            cfg = C.replace(cfg, run=C.replace(cfg.run, device=dev, progress=cfg.run.progress and dist.is_main))
            if not dist.is_main:  # the other ranks write nothing to the run directory: their files go to a scratch one
                import tempfile
                out = scratch = Path(tempfile.mkdtemp(prefix=f"enas-rank{dist.rank}-"))
                logging.getLogger("enas").setLevel(logging.WARNING)
        try:
            run = setup(cfg, out, stop, state, dist=dist)
            if dist.is_main:  # everything is built and the state restored: now the logs go back to the checkpoint
                if state is None or "archs_size" in state:
                    truncate(out / ARCHS, state["archs_size"] if state is not None else 0)
                run.metrics.commit()
        except Exception:
            if fresh and dist.is_main:  # bad data or settings found while building: leave no half-made run directory
                discard_new_run_dir(out, existed, top)
            D.cleanup(dist, scratch, barrier=False)
            raise
        if dist.enabled:
            run.local_stop, run.stop = run.stop, (lambda: run.stop_agreed)
            stop = run.stop
        try:
            summary = {**_search_body(cfg, out, real_out, run, state, stop), "run_dir": str(real_out)}
        except BaseException:
            D.cleanup(dist, scratch, barrier=False)
            raise
        D.cleanup(dist, scratch)
        return summary
    finally:  # the locks this call took (a fresh run's, a resumed run's); a caller's own stay held
        rundir.release_locks(rundir.held_locks() - before)


def _search_body(cfg: C.Config, out: Path, real_out: Path, run: SearchRun, state: dict | None,
                 stop: Callable[[], bool]) -> dict:
    log.info("search run directory: %s (%s, device %s)", out, cfg.space, run.device)
    if state is not None and state.get("phase") == "done" and (out / "result.json").exists():
        run.metrics.close()  # a finished run: resuming it changes nothing
        return read_json(out / "result.json")
    try:
        if state is None or state.get("phase") != "done":
            run_epochs(run)
            table = derive(run, cfg.search.derive_samples, run.gens["derive"])
            write_json(out / "derive.json", {"samples": len(table), "table": table})
            write_json(out / "best_arch.json", table[0]["arch"])
            run.best = {"score": table[0]["score"], "epoch": run.epoch, "arch": table[0]["arch"]}
            run.phase = "done"
            save(run)
        summary = {"space": cfg.space, "best_arch": run.best["arch"], "derive_score": run.best["score"],
                   "search_time_s": round(run.timer(), 1), "epochs": cfg.shared.epochs,
                   "nonfinite_steps": run.guard.total}
        if isinstance(run.task, ImageTask):  # what `enas show RUN_DIR` builds the network for (no data read)
            summary.update({"num_classes": run.task.num_classes, "in_channels": int(run.task.train.x.shape[1])})
        if run.table is not None:
            arch = run.mod.from_dict(run.best["arch"], run.space)
            summary["ground_truth"] = run.table.summary(arch)
            summary["benchmark_dataset"] = ds = cfg.search.benchmark_dataset
            gt = summary["ground_truth"]
            log.info("derived cell %s: %s test accuracy %.2f %% (rank %d of %d, ground truth)",
                     run.mod.to_enas_string(arch, run.space), ds, gt[ds], gt[f"{ds}_rank"], gt["of"])
    except Stopped:
        raise Stopped(real_out, "search") from None
    finally:
        run.metrics.close()
    if cfg.search.retrain and cfg.train.epochs > 0:
        from .train import train_fixed
        arch = run.mod.from_dict(run.best["arch"], run.space)
        final_dir = out / "final"
        try:
            final = train_fixed(cfg, arch, final_dir, resume=final_dir.is_dir() and any(final_dir.iterdir()),
                                stop=run.local_stop or stop, dist=run.dist)
        except Stopped:
            raise Stopped(real_out, "search") from None
        summary.update({"final": final, "test_metric": final.get("test_metric"), "test_acc": final.get("test_acc"),
                        "params": final.get("params")})
    summary["wall_time_s"] = round(run.timer(), 1)
    from .environment import environment
    summary["environment"] = environment(cfg.run.seed, run.device)  # machine, torch, CUDA, commit, seed
    write_json(out / "result.json", summary)
    return summary


def nan_if_none(v) -> float:
    return math.nan if v is None else v
