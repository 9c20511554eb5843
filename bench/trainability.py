"""Trainability of the micro supernet's shared weights (issue #14): does weight sharing let sampled architectures learn?

For each mode (a preset name: ``default`` has the identity path around every cell and 128-image rewards,
``default-paper`` the reference's cell and batch-size rewards) and seed, on the chosen data, at equal steps:

1. **supernet vs fixed**: the mean training accuracy of the last 50 of ``--steps`` SGD steps of the supernet,
   one uniformly sampled architecture per step, against the same for a fixed model of one random architecture
   trained alone (mean over ``--fixed-archs`` architectures; same net settings, optimizer, learning-rate
   schedule, data order and augmentation). Both use batch statistics in BN, as the search does.
2. **transfer ratio**: at the end, one optimizer step on architecture A (one training batch) lowers A's loss on
   that batch by dA and the loss of each of ``--others`` other random architectures by dB; ratio = mean(dB) / dA,
   averaged over ``--draws`` draws of A. Weights and optimizer state are restored after every draw. Near 1 a
   step for one architecture helps the others as much as itself; near 0 or negative they interfere. Measured
   with the optimizer's momentum as it stands (what the search does: ``transfer_ratio``) and with the momentum
   buffers zeroed (A's gradient alone: ``transfer_ratio_grad``).
3. **between-architecture spread**: validation accuracy (every validation image, batch statistics) of ``--archs``
   random architectures with the shared weights: mean and standard deviation between architectures.
4. **reward SNR**: for the same architectures, the accuracy on two disjoint random validation batches of the
   mode's reward size (``controller.reward_batch_size``, 0 = ``shared.batch_size``), a fresh pair per
   architecture as the search draws them; ``enas.search.reward_snr`` (covariance between the two batches'
   accuracies over half the variance of their difference). Below 1 the batch decides a reward more than the
   architecture does.

Results are averaged over seeds (per seed in the JSON). One torch thread; the CPU sizes below take a few
minutes per mode and seed on a 2-core machine. Not a unit test.

    python bench/trainability.py --markdown                                        # digits 8x8, both modes
    python bench/trainability.py --data ../shared/data/cifar10-jpg --seeds 0,1 --markdown \\
        data.limit_per_class=300 data.image_size=16                               # CIFAR-10 at 16x16
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
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
from enas.config import load_config
from enas.search import reward_snr
from enas.spaces import micro
from enas.tasks import ImageTask, accuracy, classification_loss, load_image_splits

TABLE_KEYS = ("supernet_train_acc", "fixed_train_acc", "transfer_ratio", "transfer_ratio_grad", "valid_acc_mean",
              "valid_acc_sd", "fixed_valid_acc", "reward_snr")
_SPLITS: dict = {}  # (data settings, seed) -> loaded splits and the data generator's state after the split


def load_cfg(mode: str, data: str, seed: int, overrides: list[str]):
    return load_config(mode, overrides=[f"data.source={data}", f"run.seed={seed}", "run.device=cpu", *overrides])


def make_task(cfg, seed: int) -> tuple[ImageTask, object]:
    """The search's task (``enas.search.setup``), with the same data order and augmentation draws for every model
    of one seed: the splits are loaded once and the data generator restarts from its state after the split."""
    key = (dataclasses.astuple(cfg.data), seed)
    if key not in _SPLITS:
        gen = build.make_generator(seed * 1000 + 1)
        ds, train, valid, test = load_image_splits(cfg, gen, with_valid=True)
        _SPLITS[key] = (ds, train, valid, test, gen.get_state())
    ds, train, valid, test, state = _SPLITS[key]
    data_gen = torch.Generator()
    data_gen.set_state(state)
    o = cfg.shared
    pad = cfg.data.pad if cfg.data.pad >= 0 else ds.image_size // 8
    task = ImageTask(train, valid, test, batch_size=o.batch_size, eval_batch_size=o.eval_batch_size, pad=pad,
                     flip=cfg.data.flip, cutout=o.cutout, device=torch.device("cpu"), data_gen=data_gen,
                     aug_gen=build.make_generator(seed * 1000 + 3), num_classes=ds.num_classes,
                     valid_batch_size=cfg.controller.reward_batch_size)
    return task, ds


def make_model(cfg, space, ds, arch=None) -> torch.nn.Module:
    model = build.make_cnn(cfg.space, space, cfg.net, num_classes=ds.num_classes, in_channels=ds.in_channels,
                           arch=arch)
    return build.use_batch_stats(model)


def sgd_step(model, opt, arch, batch, cfg) -> tuple[float, float]:
    """One training step (forward, backward, clip, SGD) as the search's shared step; returns (loss, accuracy)."""
    x, y = batch
    model.train()
    logits, aux = model(x, arch)
    loss = classification_loss(logits, aux, y, cfg.net.aux_weight)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    params = [p for p in model.parameters() if p.grad is not None]
    clip = cfg.shared.grad_clip
    torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
    opt.step()
    return loss.item(), (logits.argmax(-1) == y).float().mean().item()


class Trainer:
    """Steps through epochs like the search: the learning rate is set per epoch (``build.lr_at``)."""

    def __init__(self, model, task, cfg):
        self.model, self.task, self.cfg = model, task, cfg
        self.opt = build.sgd(model.parameters(), cfg.shared, torch.device("cpu"))
        self.epoch = -1
        self.left = 0

    def batch(self):
        if self.left == 0:
            self.epoch += 1
            for g in self.opt.param_groups:
                g["lr"] = build.lr_at(self.epoch, self.cfg.shared)
            self.task.start_epoch()
            self.left = self.task.steps_per_epoch
        self.left -= 1
        return self.task.next_train_batch()

    def train(self, steps: int, sample) -> list[float]:
        return [sgd_step(self.model, self.opt, sample(), self.batch(), self.cfg)[1] for _ in range(steps)]


@torch.no_grad()
def batch_loss(model, arch, batch, cfg) -> float:
    model.train()  # the mode of the step (batch statistics; the presets here have no dropout or drop-path)
    logits, aux = model(batch[0], arch)
    return classification_loss(logits, aux, batch[1], cfg.net.aux_weight).item()


def transfer_draws(tr: Trainer, space, rng: random.Random, draws: int, others: int) -> list:
    """``draws`` of (A, the other architectures, one training batch)."""
    return [(micro.sample_uniform(space, rng), [micro.sample_uniform(space, rng) for _ in range(others)], tr.batch())
            for _ in range(draws)]


def transfer(tr: Trainer, draws: list, zero_momentum: bool) -> dict:
    model, opt, cfg = tr.model, tr.opt, tr.cfg
    ratios, d_self, d_other = [], [], []
    for arch, rest, batch in draws:
        saved_model, saved_opt = copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict())
        if zero_momentum:
            for st in opt.state.values():
                if st.get("momentum_buffer") is not None:
                    st["momentum_buffer"].zero_()
        before = [batch_loss(model, a, batch, cfg) for a in [arch, *rest]]
        sgd_step(model, opt, arch, batch, cfg)
        after = [batch_loss(model, a, batch, cfg) for a in [arch, *rest]]
        da = before[0] - after[0]
        db = statistics.mean(b - a for b, a in zip(before[1:], after[1:]))
        d_self.append(da)
        d_other.append(db)
        ratios.append(db / da if da != 0 else math.nan)
        model.load_state_dict(saved_model)
        build.load_optimizer_state(opt, saved_opt)
    return {"ratio": statistics.mean(ratios), "ratio_of_means": statistics.mean(d_other) / statistics.mean(d_self),
            "self_decrease": statistics.mean(d_self), "other_decrease": statistics.mean(d_other), "ratios": ratios}


@torch.no_grad()
def spread_and_snr(model, task: ImageTask, space, cfg, n_archs: int, seed: int) -> dict:
    model.eval()
    rng = random.Random(10_000 + seed)  # the same architectures for every mode of a seed
    archs = [micro.sample_uniform(space, rng) for _ in range(n_archs)]
    valid = list(task.eval_batches("valid"))
    vals = torch.stack([accuracy(model, a, valid, build.autocast_factory(cfg, task.device)) for a in archs])
    v = task.valid
    rb = cfg.controller.reward_batch_size or cfg.shared.batch_size
    rb_used = min(rb, len(v.y) // 2)
    gen = torch.Generator().manual_seed(seed * 1000 + 11)
    first, second = [], []
    for a in archs:  # a fresh pair of disjoint batches per architecture, as the search's rewards
        idx = torch.randperm(len(v.y), generator=gen)
        for out, part in ((first, idx[:rb_used]), (second, idx[rb_used:2 * rb_used])):
            out.append(accuracy(model, a, [(task._prep(v.x[part]), v.y[part])], build.autocast_factory(cfg, task.device)))
    first, second = torch.stack(first), torch.stack(second)
    return {"valid_acc_mean": vals.mean().item(), "valid_acc_sd": vals.std().item(),
            "valid_acc_min": vals.min().item(), "valid_acc_max": vals.max().item(), "valid_images": len(v.y),
            "reward_batch": rb_used, "reward_snr": reward_snr(first, second), "reward_mean": first.mean().item(),
            "reward_noise_sd": ((first - second).double().var() / 2).sqrt().item()}


def run_one(mode: str, data: str, seed: int, a) -> dict:
    cfg = load_cfg(mode, data, seed, a.overrides)
    space = build.make_space(cfg)
    t0 = time.perf_counter()
    # 1. the supernet, one uniform architecture per step
    build.seed_everything(seed)
    task, ds = make_task(cfg, seed)
    model = make_model(cfg, space, ds)
    sup = Trainer(model, task, cfg)
    rng = random.Random(seed)
    accs = sup.train(a.steps, lambda: micro.sample_uniform(space, rng))
    super_s = time.perf_counter() - t0
    # ... and fixed models of random architectures, each trained alone on the same data order
    fixed_rng = random.Random(20_000 + seed)
    fixed = []
    for k in range(a.fixed_archs):
        arch = micro.sample_uniform(space, fixed_rng)
        build.seed_everything(seed * 100 + k + 1)
        ftask, _ = make_task(cfg, seed)
        fmodel = make_model(cfg, space, ds, arch)
        facc = Trainer(fmodel, ftask, cfg).train(a.steps, lambda arch=arch: arch)
        fmodel.eval()
        with torch.no_grad():
            fval = accuracy(fmodel, arch, list(ftask.eval_batches("valid")), build.autocast_factory(cfg, ftask.device))
            sval = accuracy(model, arch, list(task.eval_batches("valid")), build.autocast_factory(cfg, task.device))
        fixed.append({"train_acc_last50": statistics.mean(facc[-50:]), "valid_acc": fval.item(),
                      "shared_weights_valid_acc": sval.item()})
    # 2. transfer, 3. spread, 4. reward SNR (all on the supernet's final weights)
    t1 = time.perf_counter()
    draws = transfer_draws(sup, space, random.Random(30_000 + seed), a.draws, a.others)
    tr_opt = transfer(sup, draws, zero_momentum=False)
    tr_grad = transfer(sup, draws, zero_momentum=True)  # the same architectures and batches
    spread = spread_and_snr(model, task, space, cfg, a.archs, seed)
    return {"data": data, "mode": mode, "seed": seed, "steps": a.steps, "epochs_started": sup.epoch + 1,
            "cell_residual": cfg.net.cell_residual, "final_lr": sup.opt.param_groups[0]["lr"],
            "supernet_train_acc": statistics.mean(accs[-50:]),
            "fixed_train_acc": statistics.mean(f["train_acc_last50"] for f in fixed),
            "fixed_valid_acc": statistics.mean(f["valid_acc"] for f in fixed), "fixed": fixed, "n_archs": a.archs,
            "transfer_ratio": tr_opt["ratio"], "transfer_ratio_grad": tr_grad["ratio"],
            "transfer": tr_opt, "transfer_grad": tr_grad, **spread,
            "params": sum(p.numel() for p in model.parameters()), "image_size": ds.image_size,
            "train_images": len(task.train.y), "supernet_seconds": round(super_s, 1),
            "seconds": round(time.perf_counter() - t0, 1), "measure_seconds": round(time.perf_counter() - t1, 1)}


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    for key in dict.fromkeys((r["data"], r["mode"]) for r in rows):
        rs = [r for r in rows if (r["data"], r["mode"]) == key]
        s = {"data": key[0], "mode": key[1], "seeds": [r["seed"] for r in rs], "reward_batch": rs[0]["reward_batch"],
             "image_size": rs[0]["image_size"], "train_images": rs[0]["train_images"], "n_archs": rs[0]["n_archs"],
             "cell_residual": rs[0]["cell_residual"], "seconds_per_seed": statistics.mean(r["seconds"] for r in rs)}
        for k in TABLE_KEYS:
            vals = [r[k] for r in rs]
            s[k] = statistics.mean(vals)
            s[k + "_seed_sd"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        out.append(s)
    return out


def markdown(summary: list[dict]) -> str:
    n = summary[0]["n_archs"] if summary else 0
    lines = ["| data | mode | supernet train acc | fixed train acc | transfer ratio (momentum / grad) | "
             f"valid acc, {n} archs, shared weights: mean (SD between) | fixed valid acc | reward SNR (batch) | s / seed |",
             "|---|---|---|---|---|---|---|---|---|"]
    for s in summary:
        hw = s["image_size"]
        hw = "x".join(map(str, hw)) if isinstance(hw, (tuple, list)) else f"{hw}x{hw}"
        label = f"{Path(s['data']).name} {hw}, {s['train_images']} train"
        lines.append(f"| {label} | {s['mode']} | {s['supernet_train_acc']:.2f} ± {s['supernet_train_acc_seed_sd']:.2f} "
                     f"| {s['fixed_train_acc']:.2f} ± {s['fixed_train_acc_seed_sd']:.2f} "
                     f"| {s['transfer_ratio']:.2f} / {s['transfer_ratio_grad']:.2f} "
                     f"| {s['valid_acc_mean']:.2f} ({s['valid_acc_sd']:.3f}) | {s['fixed_valid_acc']:.2f} "
                     f"| {s['reward_snr']:.2f} ({s['reward_batch']}) | {s['seconds_per_seed']:.0f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="digits", help="digits or a dataset path (e.g. ../shared/data/cifar10-jpg)")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--modes", default="default,default-paper", help="comma-separated preset names")
    ap.add_argument("--fixed-archs", type=int, default=3, help="random architectures trained alone")
    ap.add_argument("--draws", type=int, default=5, help="architectures A of the transfer measurement")
    ap.add_argument("--others", type=int, default=8, help="other architectures per transfer draw")
    ap.add_argument("--archs", type=int, default=20, help="random architectures scored at the end")
    ap.add_argument("--json", help="write per-seed rows and the summary as JSON")
    ap.add_argument("--markdown", action="store_true", help="print a markdown table at the end")
    ap.add_argument("overrides", nargs="*", help="config overrides section.key=value (e.g. data.image_size=16)")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for mode in a.modes.split(","):
        for seed in (int(s) for s in a.seeds.split(",")):
            r = run_one(mode, a.data, seed, a)
            rows.append(r)
            print(f"{a.data} {mode:13s} seed {seed}: supernet {r['supernet_train_acc']:.3f} fixed {r['fixed_train_acc']:.3f} "
                  f"transfer {r['transfer_ratio']:.2f}/{r['transfer_ratio_grad']:.2f} valid {r['valid_acc_mean']:.3f}"
                  f"±{r['valid_acc_sd']:.3f} snr {r['reward_snr']:.2f} (batch {r['reward_batch']}) "
                  f"[{r['seconds']} s]", file=sys.stderr, flush=True)
    summary = summarise(rows)
    if a.json:
        meta = {"argv": sys.argv, "torch": torch.__version__, "python": platform.python_version(),
                "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
        with open(a.json, "w") as f:
            json.dump({"meta": meta, "summary": summary, "rows": rows}, f, indent=2)
    if a.markdown:
        print(markdown(summary))


if __name__ == "__main__":
    main()
