"""Controller-only search on a tabular benchmark (``controller.reward=table``): no supernet, no data.

The controller (or, with ``controller.kind=random``, uniform sampling) proposes cells; each proposal's reward is
the benchmark's test accuracy of that cell (as a fraction, plus optional Gaussian noise of standard deviation
``controller.reward_noise``); REINFORCE with the moving-average baseline and the entropy bonus updates the
policy after every ``controller.num_aggregate`` proposals, until ``search.table_budget`` cells have been
sampled. The search returns the best cell *by reward* (what a real search could see), with its ground truth.

This separates "the controller cannot learn" from "the shared weights give it a bad signal", and it is the
REINFORCE baseline that NAS-Bench-201 reports. It takes seconds on a CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import torch

from . import benchmarks, build, config as C, reinforce, spaces
from .rundir import MetricsLog, Stopped, Timer, new_run_dir, read_json, write_json

log = logging.getLogger("enas")


def table_search(cfg: C.Config, out: str | Path | None = None, *, resume: str | Path | None = None,
                 stop: Callable[[], bool] = lambda: False) -> dict:
    """Run a controller-only search against the space's table; returns the summary written to ``result.json``
    plus ``run_dir`` (the run directory).

    A resumed run that has finished returns its result; one that has not starts again in the same directory
    (the whole run takes seconds, and it is deterministic for a seed).
    """
    if resume is not None:
        out = Path(resume)
        cfg = C.from_dict(read_json(out / "config.json"))
        if (out / "result.json").exists():
            return {**read_json(out / "result.json"), "run_dir": str(out)}
    table = benchmarks.table_for(cfg.space, cfg.search.benchmark or None)  # before any file is written
    if resume is None:
        out = new_run_dir(None if out is None else str(out), "search", cfg.space)
        write_json(out / "config.json", C.to_dict(cfg))
    out = Path(out)
    mod = spaces.get(cfg.space)
    space = build.make_space(cfg)
    build.seed_everything(cfg.run.seed)
    device = torch.device("cpu")  # a few small LSTM passes: the host is faster than any launch overhead
    gen = build.make_generator(cfg.run.seed * 1000 + 2)
    noise_gen = build.make_generator(cfg.run.seed * 1000 + 5)
    controller = build.make_controller(cfg, space, device)
    c = cfg.controller
    opt = None
    if any(True for _ in controller.parameters()):
        opt = torch.optim.Adam(controller.parameters(), lr=c.lr, betas=(c.beta1, 0.999), eps=c.eps)
    dataset = cfg.search.benchmark_dataset
    budget = cfg.search.table_budget
    baseline = torch.zeros(())
    timer = Timer()
    metrics = MetricsLog(out / "metrics.jsonl", truncate_to=0)
    best: dict | None = None
    seen = 0
    update = 0
    try:
        while seen < budget:
            n = min(c.num_aggregate, budget - seen)
            sample = controller(n, generator=gen)
            archs = [mod.arch_from_actions(a, space) for a in sample.actions.tolist()]
            truth = torch.tensor([table.accuracy(a, dataset) / 100.0 for a in archs])
            reward = truth + c.reward_noise * torch.randn(n, generator=noise_gen) if c.reward_noise > 0 else truth
            for a, r, t in zip(archs, reward.tolist(), truth.tolist()):
                if best is None or r > best["reward"]:
                    best = {"reward": r, "truth": t, "arch": mod.to_dict(a), "sample": seen}
                seen += 1
            if opt is not None:
                rewards = reward + c.entropy_weight * sample.entropy.detach()
                baselines, baseline = reinforce.ema_baselines(rewards, baseline, c.baseline_decay)
                loss = reinforce.policy_loss(sample.log_prob, rewards, baselines, sample.skip_kl, c.skip_weight)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            metrics.write({"kind": "table", "update": update, "samples": seen,
                           "reward": reward.mean().item(), "truth": 100 * truth.mean().item(),
                           "entropy": sample.entropy.mean().item(), "best_reward": best["reward"],
                           "best_truth": 100 * best["truth"], "time": round(timer(), 3)})
            update += 1
            if stop():
                raise Stopped(out, "search")
    finally:
        metrics.close()
    arch = mod.from_dict(best["arch"], space)
    summary = {"space": cfg.space, "mode": "table", "controller": c.kind, "best_arch": best["arch"],
               "derive_score": best["reward"], "found_at_sample": best["sample"], "samples": seen,
               "benchmark_dataset": dataset, "ground_truth": table.summary(arch),
               "search_time_s": round(timer(), 3)}
    summary["wall_time_s"] = summary["search_time_s"]
    from .environment import environment
    summary["environment"] = environment(cfg.run.seed, "cpu")  # machine, torch, commit, seed (no device work)
    write_json(out / "best_arch.json", best["arch"])
    write_json(out / "result.json", summary)
    gt = summary["ground_truth"]
    log.info("table search: best of %d cells by reward: %s  (%s test accuracy %.2f %%, rank %d of %d)", seen,
             mod.to_enas_string(arch, space), dataset, gt[dataset], gt[f"{dataset}_rank"], gt["of"])
    return {**summary, "run_dir": str(out)}
