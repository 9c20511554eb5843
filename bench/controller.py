"""Controller cost against the child (shared-weight) step, at the paper's micro search configuration.

Measures, on the ``micro-search`` preset (20 channels, 6 + 2 cells, batch 160, 32x32 images):

* sampling one architecture (one controller call with ``n = 1``, plus decoding it);
* sampling the epoch's ``steps_per_epoch`` architectures in one batched call (what ``search.start_epoch``
  does) versus that many single calls;
* one REINFORCE update with ``num_aggregate`` samples (sample with grad, decode, baseline, policy loss,
  backward, Adam step), *excluding* the child's reward forwards (the rewards are random numbers here);
* one reward forward of the child (validation batch, eval mode, no grad), reported separately;
* one shared-weight step of the supernet (``search.shared_step``), the denominator.

The target share is ``(batched sample / steps + train_steps * update / steps) / child step`` <= 2 %.

    python bench/controller.py [--device cuda]
"""

from __future__ import annotations

import argparse
import sys

import common as B


def run(args) -> dict:
    import torch
    from enas import reinforce, search
    B.setup_threads(args.threads)
    ov = [f"run.device={args.device}"]
    if args.batch:
        ov.append(f"shared.batch_size={args.batch}")
    cfg = B.load_cfg("micro-search", ov)
    run_ = B.make_run(cfg, n_train=max(4000, 25 * cfg.shared.batch_size), n_valid=2000)
    steps = 45_000 // cfg.shared.batch_size  # the paper's epoch: 45,000 training images, last partial batch dropped
    c = cfg.controller
    ctrl, gen, dev = run_.controller, run_.gens["ctrl"], run_.device

    def sample1():
        with torch.no_grad():
            a = ctrl(1, generator=gen).actions.cpu()
        search.decode(run_, a)

    def batched():
        with torch.no_grad():
            a = ctrl(steps, generator=gen).actions.cpu()
        search.decode(run_, a)

    def singles():
        for _ in range(steps):
            sample1()

    def update():
        sample = ctrl(c.num_aggregate, generator=gen)
        search.decode(run_, sample.actions)
        acc = torch.rand(c.num_aggregate, device=dev)  # stands in for the child's validation accuracies
        rewards = acc + c.entropy_weight * sample.entropy.detach()
        baselines, run_.baseline = reinforce.ema_baselines(rewards, run_.baseline, c.baseline_decay)
        loss = reinforce.policy_loss(sample.log_prob, rewards, baselines, sample.skip_kl, c.skip_weight)
        run_.ctrl_opt.zero_grad(set_to_none=True)
        loss.backward()
        run_.ctrl_opt.step()
        loss.detach()

    ctrl.train()
    fast = B.summarize(B.interleave({"sample1": sample1, "batched": batched, "update": update},
                                    repeats=args.repeats_fast, warmup=2, device=dev))
    t_singles = B.median(B.interleave({"s": singles}, repeats=args.repeats_singles, warmup=0, device=dev)["s"])

    archs = B.random_archs(run_, 2, args.seed)
    valid = run_.task.next_valid_batch()

    def child():
        B.shared_step(run_, archs[0])

    def reward():
        run_.model.eval()
        search.reward_of(run_, archs[1], valid)
        run_.model.train()

    slow = B.summarize(B.interleave({"child": child, "reward": reward}, repeats=args.repeats, warmup=1,
                                    device=dev))
    t_child = slow["child"]
    per_step = fast["batched"] / steps + c.train_steps * fast["update"] / steps
    reward_share = c.train_steps * c.num_aggregate * slow["reward"] / steps / t_child
    return {
        "machine": B.machine_info(args.device), "device": args.device, "batch": cfg.shared.batch_size,
        "steps_per_epoch": steps, "train_steps": c.train_steps, "num_aggregate": c.num_aggregate,
        "t_sample1": fast["sample1"], "t_batched": fast["batched"], "t_singles": t_singles,
        "batched_speedup": t_singles / fast["batched"], "t_update": fast["update"],
        "t_child": t_child, "t_reward": slow["reward"],
        "sample1_over_child": fast["sample1"] / t_child,
        "update_over_child": fast["update"] / t_child,
        "controller_share": per_step / t_child,
        "controller_share_unbatched": (fast["sample1"] + c.train_steps * fast["update"] / steps) / t_child,
        "reward_forward_share": reward_share,
    }


def table(r: dict) -> str:
    return "\n".join([
        "| measure | time | vs child step |",
        "|---|---|---|",
        f"| child step (supernet, batch {r['batch']}) | {B.fmt_s(r['t_child'])} | 1 |",
        f"| sample 1 architecture | {B.fmt_s(r['t_sample1'])} | {100 * r['sample1_over_child']:.3f} % |",
        f"| sample {r['steps_per_epoch']} (one epoch) batched | {B.fmt_s(r['t_batched'])} | "
        f"{B.fmt_s(r['t_batched'] / r['steps_per_epoch'])} per arch |",
        f"| sample {r['steps_per_epoch']} by single calls | {B.fmt_s(r['t_singles'])} | "
        f"batched is {r['batched_speedup']:.0f}x faster |",
        f"| REINFORCE update, {r['num_aggregate']} samples, no reward forwards | {B.fmt_s(r['t_update'])} | "
        f"{100 * r['update_over_child']:.2f} % |",
        f"| **controller per shared step** (batched sample + {r['train_steps']}/{r['steps_per_epoch']} "
        f"of an update) | | **{100 * r['controller_share']:.3f} %** (target <= 2 %) |",
        f"| same with unbatched per-step sampling | | {100 * r['controller_share_unbatched']:.3f} % |",
        f"| child reward forward (valid batch, no grad) | {B.fmt_s(r['t_reward'])} | "
        f"{r['train_steps'] * r['num_aggregate']} per epoch = {100 * r['reward_forward_share']:.1f} % of the "
        "shared phase |",
    ])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    B.common_args(p)
    p.add_argument("--batch", type=int, default=0, help="child batch (0: the preset's 160)")
    p.add_argument("--repeats", type=int, default=3, help="repeats of the child step")
    p.add_argument("--repeats-fast", type=int, default=20, help="repeats of the controller measures")
    p.add_argument("--repeats-singles", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    return B.cli(parser, run, table, argv)


if __name__ == "__main__":
    sys.exit(main())
