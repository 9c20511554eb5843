"""Quick trainability check of the micro supernet (issue #14): does weight sharing let sampled architectures learn?

Trains the default preset's supernet (digits 8x8; channels 8, 2 + 2 cells, 4 nodes, batch 32, lr 0.1 cosine)
for ``--steps`` steps, one uniformly sampled architecture per step, with batch statistics in BN (as the search
does), once per variant (``cell_residual`` off and on by default). Prints, per variant, the mean training accuracy
of the last 50 steps and the mean validation accuracy of 20 random architectures with the shared weights
(each scored on the whole validation split, batch statistics). One torch thread, fixed seed; not a unit test.

    python bench/trainability_quick.py [--steps 400] [--seed 0] [--variants off,on] [--out FILE]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import time

import torch

from enas import build
from enas.config import load_config
from enas.spaces import micro
from enas.tasks import ImageTask, accuracy, classification_loss, load_image_splits

VARIANTS = {"off": {"cell_residual": False}, "on": {"cell_residual": True},
            "concat": {"cell_residual": False, "cell_output": "concat"}}


def run_variant(name: str, steps: int, seed: int, n_archs: int) -> dict:
    cfg = load_config()  # the default preset: what `enas search` runs with no arguments
    cfg = dataclasses.replace(cfg, net=dataclasses.replace(cfg.net, **VARIANTS[name]))
    device = torch.device("cpu")
    build.seed_everything(seed)
    data_gen = build.make_generator(seed * 1000 + 1)
    ds, train, valid, test = load_image_splits(cfg, data_gen, with_valid=True)
    pad = cfg.data.pad if cfg.data.pad >= 0 else ds.image_size // 8
    o = cfg.shared
    task = ImageTask(train, valid, test, batch_size=o.batch_size, eval_batch_size=o.eval_batch_size, pad=pad,
                     flip=cfg.data.flip, cutout=o.cutout, device=device, data_gen=data_gen,
                     aug_gen=build.make_generator(seed * 1000 + 3), num_classes=ds.num_classes)
    space = build.make_space(cfg)
    model = build.make_cnn(cfg.space, space, cfg.net, num_classes=ds.num_classes, in_channels=ds.in_channels)
    build.use_batch_stats(model)
    opt = build.sgd(model.parameters(), o, device)
    rng = random.Random(seed)
    accs: list[float] = []
    t0 = time.perf_counter()
    step = 0
    epoch = 0
    while step < steps:
        for g in opt.param_groups:
            g["lr"] = build.lr_at(epoch, o)
        task.start_epoch()
        for _ in range(task.steps_per_epoch):
            if step >= steps:
                break
            arch = micro.sample_uniform(space, rng)
            model.train()
            x, y = task.next_train_batch()
            logits, aux = model(x, arch)
            loss = classification_loss(logits, aux, y, cfg.net.aux_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            params = [p for p in model.parameters() if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, o.grad_clip if o.grad_clip > 0 else float("inf"))
            opt.step()
            accs.append((logits.argmax(-1) == y).float().mean().item())
            step += 1
        epoch += 1
    train_s = time.perf_counter() - t0
    model.eval()
    eval_rng = random.Random(10_000 + seed)  # the same 20 architectures for every variant
    vals = [accuracy(model, micro.sample_uniform(space, eval_rng), list(task.eval_batches("valid")),
                     build.autocast_factory(cfg, device)).item() for _ in range(n_archs)]
    return {"variant": name, **VARIANTS[name], "steps": steps, "epochs_started": epoch,
            "train_acc_last50": statistics.mean(accs[-50:]), "valid_acc_random_archs": statistics.mean(vals),
            "valid_acc_min": min(vals), "valid_acc_max": max(vals), "train_seconds": round(train_s, 1),
            "params": sum(p.numel() for p in model.parameters())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--archs", type=int, default=20, help="random architectures scored at the end")
    ap.add_argument("--variants", default="off,on", help=f"comma-separated, from {', '.join(VARIANTS)}")
    ap.add_argument("--out", help="write the results as JSON")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for name in a.variants.split(","):
        r = run_variant(name, a.steps, a.seed, a.archs)
        rows.append(r)
        print(f"{name:6s} cell_residual={r['cell_residual']!s:5}  train acc (last 50 steps) {r['train_acc_last50']:.3f}  "
              f"valid acc of {a.archs} random archs {r['valid_acc_random_archs']:.3f} "
              f"[{r['valid_acc_min']:.2f}, {r['valid_acc_max']:.2f}]  ({r['train_seconds']} s, "
              f"{r['params']} params)", flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
