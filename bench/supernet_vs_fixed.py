"""Supernet step versus fixed-model step, for the micro, macro and recurrent spaces.

For several random architectures A of each space's paper search configuration (``micro-search``,
``macro-search``, ``ptb-search``; the batch can be reduced on CPU), time side by side, on the same batch:

* ``supernet``: ``enas.search.shared_step`` of the supernet running A (forward, backward, clip, SGD step);
* ``with sampling``: the supernet step plus the time of one unbatched controller call that samples an
  architecture (the naive loop), or plus the per-step share of one batched call that samples the whole
  epoch's architectures (what ``search.start_epoch`` does; ``amortised``). Sampling is timed on its own
  with many repeats, since it is far below the noise of a step;
* ``fixed``: the same step of the fixed model built from A at the same width (same BatchNorm mode, same
  optimizer settings, the supernet's weights for its ops).

Reports per space the median over architectures of median(supernet) / median(fixed) (and, as a check robust
to load from other processes, of min(supernet) / min(fixed)), and the memory ratio (see
``common.step_memory`` for the method). The CPU default batch (16) keeps the run short; a smaller batch
makes the supernet's fixed per-step host overhead a larger share, so the ratio is if anything pessimistic.

    python bench/supernet_vs_fixed.py                       # CPU, batch 16, 5 archs per space
    python bench/supernet_vs_fixed.py --device cuda --batch 0   # GPU at the presets' batch sizes
"""

from __future__ import annotations

import argparse
import sys

import common as B

PRESETS = {"micro": "micro-search", "macro": "macro-search", "rnn": "ptb-search"}


# architectures sampled per epoch at each preset's batch: CIFAR-10's 45,000 training images at 160 (micro) and
# 128 (macro); PTB's 929,589 training tokens at batch 128 and bptt 35 (rnn)
EPOCH_STEPS = {"micro": 45_000 // 160, "macro": 45_000 // 128, "rnn": 207}


def memory_rows(space: str, *, device: str, batch: int, archs: int, seed: int = 0) -> list[dict]:
    """Memory of one supernet step and one fixed-model step of the same architecture, on the same batch."""
    ov = [f"run.device={device}"] + ([f"shared.batch_size={batch}"] if batch else [])
    cfg = B.load_cfg(PRESETS[space], ov)
    run = B.make_run(cfg, n_train=max(4 * cfg.shared.batch_size, 2000), n_valid=500,
                     corpus_tokens=max(50_000, 8 * cfg.shared.batch_size * cfg.data.bptt))
    rows = []
    for i, arch in enumerate(B.random_archs(run, archs, seed)):
        fx = B.fixed_twin(run, arch)
        if device != "cpu":  # allocator and cuDNN warm-up (the CPU proxy needs none)
            B.shared_step(run, arch)
            B.shared_step(fx, arch)
        st = B.snapshot(run)
        ms = B.step_memory(lambda: B.shared_step(run, arch), run.model, run.opt, device)
        B.restore(run, st)
        mf = B.step_memory(lambda: B.shared_step(fx, arch), fx.model, fx.opt, device)
        key = "peak" if "peak" in ms else "proxy"
        rows.append({"arch": i, "batch": cfg.shared.batch_size, "mem_key": key, "mem_super": ms[key],
                     "mem_fixed": mf[key], "mem_ratio": ms[key] / mf[key], "saved_super": ms["saved"],
                     "saved_fixed": mf["saved"], "params_super": ms["params"], "params_fixed": mf["params"],
                     "opt_super": ms["opt_state_full"], "opt_fixed": mf["opt_state_full"],
                     "rss_super": ms["rss_peak"], "rss_fixed": mf["rss_peak"]})
        del fx
    return rows


def bench_space(space: str, *, device: str, batch: int, archs: int, repeats: int, warmup: int, seed: int = 0,
                memory: bool = True, mem_batch: int = 0, mem_archs: int = 2) -> dict:
    import torch
    from enas import search
    ov = [f"run.device={device}"]
    if batch:
        ov.append(f"shared.batch_size={batch}")
    cfg = B.load_cfg(PRESETS[space], ov)
    run = B.make_run(cfg, n_train=max(20 * cfg.shared.batch_size, 4000), n_valid=1000)
    steps = EPOCH_STEPS[space]
    rows = []
    for i, arch in enumerate(B.random_archs(run, archs, seed)):
        fx = B.fixed_twin(run, arch)

        def sup(arch=arch):
            B.shared_step(run, arch)

        def fix(arch=arch, fx=fx):
            B.shared_step(fx, arch)

        raw = B.paired(run, {"supernet": sup, "fixed": fix}, repeats=repeats, warmup=warmup)
        t = B.summarize(raw)
        row = {"arch": i, **{f"t_{k}": v for k, v in t.items()}, "ratio": t["supernet"] / t["fixed"],
               "ratio_fastest": min(raw["supernet"]) / min(raw["fixed"]), "raw": raw}
        rows.append(row)
        del fx
    # batched sampling of one epoch's architectures, as search.start_epoch does, amortised per step
    ctrl = run.controller

    def batched():
        with torch.no_grad():
            a = ctrl(steps, generator=run.gens["ctrl"]).actions.cpu()
        search.decode(run, a)

    def single():
        B.sample_one(run)

    ts = B.summarize(B.interleave({"batched": batched, "single": single}, repeats=max(5, repeats), device=device))
    amort = ts["batched"] / steps
    for r in rows:
        r["ratio_sample"] = (r["t_supernet"] + ts["single"]) / r["t_fixed"]
    ratios = [r["ratio"] for r in rows]
    med_fixed = B.median(r["t_fixed"] for r in rows)
    out = {
        "space": space, "preset": PRESETS[space], "batch": cfg.shared.batch_size, "device": device,
        "archs": len(rows), "repeats": repeats, "rows": rows,
        "ratio_median": B.median(ratios), "ratio_max": max(ratios), "ratio_min": min(ratios),
        "ratio_of_mins_median": B.median(r["ratio_fastest"] for r in rows),
        "ratio_sample_median": B.median(r["ratio_sample"] for r in rows),
        "sample_batched_per_step": amort, "sample_steps": steps, "sample_single": ts["single"],
        "ratio_amortised_median": B.median((r["t_supernet"] + amort) / r["t_fixed"] for r in rows),
        "t_fixed_median": med_fixed, "t_supernet_median": B.median(r["t_supernet"] for r in rows),
    }
    if memory:
        del run
        mem = memory_rows(space, device=device, batch=mem_batch, archs=mem_archs, seed=seed)
        out["mem_rows"] = mem
        out["mem_batch"] = mem[0]["batch"]
        out["mem_key"] = mem[0]["mem_key"]
        out["mem_ratio_median"] = B.median(r["mem_ratio"] for r in mem)
        out["mem_ratio_max"] = max(r["mem_ratio"] for r in mem)
        out["saved_ratio_median"] = B.median(r["saved_super"] / r["saved_fixed"] for r in mem)
        out["params_ratio"] = B.median(r["params_super"] / r["params_fixed"] for r in mem)
        out["mem_super_median"] = B.median(r["mem_super"] for r in mem)
        out["mem_fixed_median"] = B.median(r["mem_fixed"] for r in mem)
    return out


def run(args) -> dict:
    B.setup_threads(args.threads)
    res = {"machine": B.machine_info(args.device), "spaces": {}}
    for space in args.spaces.split(","):
        batch = args.batch if args.batch >= 0 else (16 if args.device == "cpu" else 0)
        res["spaces"][space] = bench_space(space, device=args.device, batch=batch, archs=args.archs,
                                           repeats=args.repeats, warmup=args.warmup, seed=args.seed,
                                           memory=not args.no_memory, mem_batch=args.mem_batch,
                                           mem_archs=args.mem_archs)
    return res


def table(res: dict) -> str:
    lines = ["| space | batch | fixed step | supernet / fixed (median over archs; range) | same from fastest repeats "
             "| with 1-arch sampling | with batched sampling (amortised) | memory supernet / fixed (batch) "
             "| supernet / fixed memory | saved activations ratio |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for s, r in res["spaces"].items():
        mem = (f"{r['mem_ratio_median']:.3f} (max {r['mem_ratio_max']:.3f}; {r['mem_key']}, batch {r['mem_batch']}) "
               f"| {B.fmt_mb(r['mem_super_median'])} / {B.fmt_mb(r['mem_fixed_median'])}") if "mem_key" in r else "n/a | n/a"
        sav = f"{r['saved_ratio_median']:.3f}" if "saved_ratio_median" in r else "n/a"
        lines.append(f"| {s} | {r['batch']} | {B.fmt_s(r['t_fixed_median'])} | {r['ratio_median']:.3f} "
                     f"({r['ratio_min']:.3f}-{r['ratio_max']:.3f}) | {r['ratio_of_mins_median']:.3f} "
                     f"| {r['ratio_sample_median']:.3f} "
                     f"| {r['ratio_amortised_median']:.3f} | {mem} | {sav} |")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    B.common_args(p)
    p.add_argument("--spaces", default="micro,macro,rnn")
    p.add_argument("--batch", type=int, default=-1, help="shared batch size (-1: 16 on CPU, the preset's on "
                                                         "CUDA; 0: the preset's)")
    p.add_argument("--archs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-memory", action="store_true")
    p.add_argument("--mem-batch", type=int, default=0, help="batch of the memory measurement (0: the preset's)")
    p.add_argument("--mem-archs", type=int, default=2, help="architectures whose memory is measured")
    return p


def main(argv: list[str] | None = None) -> int:
    return B.cli(parser, run, table, argv)


if __name__ == "__main__":
    sys.exit(main())
