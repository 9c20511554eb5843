"""One epoch of the paper's micro search (``micro-search``: 20 channels, 6 + 2 cells, batch 160, 45,000
training and 5,000 validation images of 32x32) on random CIFAR-10-shaped uint8 data, and the projected time
of the full 150-epoch search.

The run is built by the real ``enas.search.setup`` (data and augmentation on the device) and driven by the
real phase functions:

* ``start_epoch``: the epoch's architectures sampled in one batched controller call;
* shared phase: ``search.shared_step`` per step (sync-free), with the loop's interval logging (or
  ``--host-sync``: plus one host read of the step's skip flag, the cost of the per-step non-finite check
  the loop had before ``enas.guard``); on CPU only ``--steps`` steps are run (default
  12) and the phase is extrapolated to ``steps_per_epoch`` (281); on CUDA the whole phase runs unless it
  passes ``--budget-s``;
* controller phase: ``search.train_controller`` (30 updates of 10 sampled architectures, each rewarded by a
  validation forward); on CPU ``--ctrl-steps`` of them (default 2), extrapolated to 30;
* the per-epoch derive of ``search.epoch_derive_samples`` (10) architectures (``--derive-n`` of them on
  CPU, extrapolated), and the checkpoints (``search.save``; 2 at the phase ends plus one every 100 steps).

    python bench/epoch.py                                   # CPU, extrapolated
    python bench/epoch.py --device cuda --bf16 on --channels-last on
    python bench/epoch.py --device cuda --matrix            # the four bf16 x channels_last combinations
"""

from __future__ import annotations

import argparse
import sys
import time

import common as B

PAPER_EPOCHS = 150


def one(args, *, bf16: str, channels_last: str, host_sync: str = "off") -> dict:
    from enas import config as C, search
    dev = args.device
    cuda = dev.startswith("cuda")
    cfg = B.load_cfg("micro-search", [f"run.device={dev}", f"run.bf16={bf16}",
                                      f"run.channels_last={channels_last}"])
    t0 = time.perf_counter()
    run = B.make_run(cfg, n_train=45_000, n_valid=5_000)
    t_setup = time.perf_counter() - t0
    steps = run.task.steps_per_epoch

    def do_step(arch):
        search.shared_step(run, arch)
        if host_sync == "on":
            bool(run.guard.found_inf)  # what the loop used to do every step: wait for the device

    # warm-up: a few steps on the epoch's first architectures (allocator, cuDNN, momentum buffers)
    search.start_epoch(run)
    for k in range(args.warmup):
        do_step(run.epoch_archs[k])
    B.sync(dev)

    # ---- shared phase
    t_start = B.timed(lambda: search.start_epoch(run), dev)
    want = steps if (cuda and args.steps == 0) else min(args.steps or 10, steps)
    run.step = 0
    B.sync(dev)
    t = time.perf_counter()
    done = 0
    while done < want:
        do_step(run.epoch_archs[run.step])
        run.step += 1
        run.global_step += 1
        done += 1
        if run.global_step % run.cfg.run.log_every == 0:
            search._log_interval(run)
        if args.budget_s and time.perf_counter() - t > args.budget_s:
            break
    B.sync(dev)
    t_shared_run = time.perf_counter() - t
    t_step = t_shared_run / done
    # data pipeline alone (index, to float, pad-crop, flip on the device), for reference
    t_batch = B.median(B.timed(run.task.next_train_batch, dev) for _ in range(10))

    # ---- controller phase
    c = cfg.controller
    k_ctrl = c.train_steps if (cuda and args.ctrl_steps == 0) else min(args.ctrl_steps or 2, c.train_steps)
    run.cfg = C.replace(cfg, controller=C.replace(c, train_steps=k_ctrl))
    t_ctrl = B.timed(lambda: search.train_controller(run), dev) / k_ctrl
    run.cfg = cfg

    # ---- per-epoch derive and checkpoints
    n_der = cfg.search.epoch_derive_samples
    k_der = n_der if (cuda and args.derive_n == 0) else min(args.derive_n or 2, n_der)
    t_derive = B.timed(lambda: search.derive(run, k_der, run.gens["derive"]), dev) * n_der / max(k_der, 1)
    t_save = B.timed(lambda: search.save(run), dev)
    every = cfg.search.checkpoint_every
    saves = 2 + (len(range(every, steps, every)) if every else 0)

    shared = steps * t_step
    ctrl = c.train_steps * t_ctrl
    epoch = t_start + shared + ctrl + t_derive + saves * t_save
    final_derive = t_derive / n_der * cfg.search.derive_samples
    total_h = (PAPER_EPOCHS * epoch + final_derive) / 3600
    return {
        "bf16": bf16, "channels_last": channels_last, "host_sync": host_sync, "device": dev,
        "batch": cfg.shared.batch_size, "steps_per_epoch": steps, "steps_measured": done,
        "ctrl_steps_measured": k_ctrl, "derive_measured": k_der, "extrapolated": done < steps or k_ctrl < c.train_steps,
        "t_setup": t_setup, "t_start_epoch": t_start, "t_step": t_step, "t_batch": t_batch,
        "t_ctrl_step": t_ctrl, "t_derive_epoch": t_derive, "t_save": t_save, "saves": saves,
        "shared_s": shared, "ctrl_s": ctrl, "epoch_s": epoch, "images_per_s": cfg.shared.batch_size / t_step,
        "projected_hours_150": total_h,
    }


def variants(args) -> list[tuple[str, str, str]]:
    """(bf16, channels_last, host_sync) for each run."""
    if args.variants:
        return [tuple((v.split(":") + ["off"] * 3)[:3]) for v in args.variants.split(",")]
    combos = [("on", "on"), ("on", "off"), ("off", "on"), ("off", "off")] if args.matrix else \
        [(args.bf16, args.channels_last)]
    return [(bf, cl, args.host_sync) for bf, cl in combos]


def run(args) -> dict:
    B.setup_threads(args.threads)
    res = {"machine": B.machine_info(args.device), "device": args.device, "rows": []}
    t0 = time.perf_counter()
    for bf, cl, hs in variants(args):
        if args.total_budget_s and time.perf_counter() - t0 > args.total_budget_s:
            print(f"# epoch bench: time budget spent, skipping bf16={bf} channels_last={cl} host_sync={hs}",
                  file=sys.stderr)
            continue
        res["rows"].append(one(args, bf16=bf, channels_last=cl, host_sync=hs))
        x = res["rows"][-1]
        print(f"# epoch bench: bf16={bf} channels_last={cl} host_sync={hs}: "
              f"{B.fmt_s(x['t_step'])}/step, {x['projected_hours_150']:.2f} h projected", file=sys.stderr, flush=True)
        B.emit(res, args.out)  # after every variant, so a run cut short keeps what it measured
    return res


def table(r: dict) -> str:
    out = ["| bf16 | channels_last | host read per step | shared step | images/s | data+aug per batch | controller update "
           "(10 rewards) | epoch | 150 epochs (projected) | measured |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for x in r["rows"]:
        meas = (f"{x['steps_measured']}/{x['steps_per_epoch']} steps, {x['ctrl_steps_measured']}/30 updates, "
                f"{x['derive_measured']}/10 derive")
        out.append(f"| {x['bf16']} | {x['channels_last']} | {x.get('host_sync', 'off')} | {B.fmt_s(x['t_step'])} "
                   f"| {x['images_per_s']:.0f} | {B.fmt_s(x['t_batch'])} | {B.fmt_s(x['t_ctrl_step'])} "
                   f"| {x['epoch_s'] / 60:.1f} min | {x['projected_hours_150']:.2f} h | {meas} |")
    return "\n".join(out)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    B.common_args(p)
    p.add_argument("--bf16", default="auto", choices=("auto", "on", "off"))
    p.add_argument("--channels-last", default="auto", choices=("auto", "on", "off"))
    p.add_argument("--matrix", action="store_true", help="the four bf16 x channels_last combinations")
    p.add_argument("--host-sync", default="off", choices=("on", "off"),
                   help="read the step's skip flag on the host every step (the old loop's cost)")
    p.add_argument("--steps", type=int, default=0, help="shared steps to run (0: all on CUDA, 10 on CPU)")
    p.add_argument("--ctrl-steps", type=int, default=0, help="controller updates (0: all on CUDA, 2 on CPU)")
    p.add_argument("--derive-n", type=int, default=0, help="per-epoch derive samples (0: all on CUDA, 2 on CPU)")
    p.add_argument("--budget-s", type=float, default=0.0, help="stop the shared phase after this many seconds "
                                                             "and extrapolate (0: no limit)")
    p.add_argument("--warmup", type=int, default=1, help="untimed shared steps first")
    p.add_argument("--variants", default="", help="comma list of bf16:channels_last[:host_sync], "
                                                 "e.g. on:on,off:off,on:on:on (overrides the flags above)")
    p.add_argument("--total-budget-s", type=float, default=0.0, help="start no new variant after this many "
                                                                   "seconds")
    return p


def main(argv: list[str] | None = None) -> int:
    return B.cli(parser, run, table, argv)


if __name__ == "__main__":
    sys.exit(main())
