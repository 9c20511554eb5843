"""``torch.compile`` for final training of a fixed model (``run.compile=on``): eager step vs compiled step.

The network is the paper's micro cell at the ``micro-final`` preset (36 channels, 15 + 2 cells, auxiliary
head, drop-path), or smaller with ``--channels``/``--layers``/``--batch`` (the CPU default). One training
step is ``enas.train.fixed_step``, what ``enas train`` does: forward with the step's drop-path probability,
loss with the auxiliary head, backward, clipping, the device-side non-finite check and a fused SGD step. Both variants are built
from the same weights and run interleaved on the same batch. Reported: median step times, the speed-up,
the time of the first compiled call (compilation), and the number of steps after which compiling pays for
itself (never, when the compiled step is not faster).

    python bench/compile_fixed.py                         # CPU: a small copy of the network
    python bench/compile_fixed.py --device cuda --full    # the micro-final network at batch 144
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import common as B


def build_step(cfg, model, device):
    """``enas.train.fixed_step`` (the real training step) with its own optimizer and guard."""
    from enas import build, train
    from enas.guard import StepGuard
    guard = StepGuard(device, cfg.run.max_nonfinite, "train.lr_max")
    opt = build.sgd(model.parameters(), cfg.train, device, found_inf=guard.found_inf)
    params = [p for g in opt.param_groups for p in g["params"]]
    autocast = build.autocast_factory(cfg, device)

    def step(forward, x, y, p):
        train.fixed_step(forward, opt, params, guard, autocast, x, y, p, aux_weight=cfg.final_net.aux_weight,
                         grad_clip=cfg.train.grad_clip)
    return step


def run(args) -> dict:
    import torch
    import torch._functorch.config
    import torch._inductor.config
    from enas import build
    from enas.spaces import micro as MI
    B.setup_threads(args.threads)
    if not args.warm_cache:  # measure a first compilation, not a hit in inductor's caches from an earlier run
        import os
        import tempfile
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="enas-compile-bench-")
        torch._inductor.config.fx_graph_cache = False
        if hasattr(torch._functorch.config, "enable_autograd_cache"):
            torch._functorch.config.enable_autograd_cache = False
    dev = torch.device(args.device)
    ov = [f"run.device={args.device}"]
    if not args.full:
        ov += [f"final_net.channels={args.channels}", f"final_net.num_layers={args.layers}",
               f"train.batch_size={args.batch}"]
    cfg = B.load_cfg("micro-final", ov)
    space = build.make_space(cfg)
    arch = MI.from_enas_string(MI.PAPER_ARCH_STRING, space)
    torch.manual_seed(0)
    eager = build.make_cnn("micro", space, cfg.final_net, num_classes=10, in_channels=3, arch=arch).to(dev)
    twin = copy.deepcopy(eager)
    chl = build.channels_last(cfg.run.channels_last, dev, cfg.space)
    if chl:
        eager, twin = (m.to(memory_format=torch.channels_last) for m in (eager, twin))
    eager.train()
    twin.train()
    compiled = torch.compile(twin)
    step_e, step_c = build_step(cfg, eager, dev), build_step(cfg, twin, dev)
    bs = cfg.train.batch_size
    g = torch.Generator().manual_seed(1)
    x = torch.randn(bs, 3, 32, 32, generator=g).to(dev)
    if chl:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (bs,), generator=g).to(dev)
    p = cfg.final_net.drop_path * 0.5
    p_dev = torch.zeros((), device=dev)  # as enas train does for a compiled model: p changes every step

    def compiled_step(value: float) -> None:
        step_c(compiled, x, y, p_dev.fill_(value))
    t_eager_first = B.timed(lambda: step_e(eager, x, y, p), dev)
    info = {"machine": B.machine_info(args.device), "device": args.device, "batch": bs,
            "channels": cfg.final_net.channels, "layers": cfg.final_net.num_layers,
            "params": sum(q.numel() for q in eager.parameters()),
            "bf16": build.flag(cfg.run.bf16, dev), "channels_last": chl, "t_first_eager": t_eager_first}
    # a run cut short by a time limit keeps what it had: the start time of the compilation, then its length
    B.emit({**info, "partial": "compiling", "compile_started_unix": time.time()}, args.out)
    t0 = time.perf_counter()
    compiled_step(p)
    B.sync(dev)
    t_compile = time.perf_counter() - t0
    B.emit({**info, "partial": "compiled, timing steps", "t_compile": t_compile}, args.out)
    # later values of the drop-path probability must not recompile
    t_second = B.timed(lambda: compiled_step(p * 0.9), dev)
    t_third = B.timed(lambda: compiled_step(p * 0.8), dev)
    times = B.interleave({"eager": lambda: step_e(eager, x, y, p), "compiled": lambda: compiled_step(p)},
                         repeats=args.repeats, warmup=args.warmup, device=dev)
    t = B.summarize(times)
    gain = t["eager"] - t["compiled"]
    return {**info, "t_eager": t["eager"], "t_compiled": t["compiled"], "speedup": t["eager"] / t["compiled"],
            "t_compile": t_compile, "t_second_value": t_second,
            "t_third_value": t_third,
            "break_even_steps": (t_compile - t["compiled"]) / gain if gain > 0 else None}


def table(r: dict) -> str:
    be = r["break_even_steps"]
    return "\n".join([
        "| network | batch | eager step | compiled step | speed-up | first compiled call | second drop-path value "
        "| third value | pays off after |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| micro paper cell, {r['channels']} ch, {r['layers']} layers ({r['params']:,} params) | {r['batch']} "
        f"| {B.fmt_s(r['t_eager'])} | {B.fmt_s(r['t_compiled'])} | {r['speedup']:.2f}x | {B.fmt_s(r['t_compile'])} "
        f"| {B.fmt_s(r['t_second_value'])} | {B.fmt_s(r['t_third_value'])} "
        f"| {'never' if be is None else f'{be:.0f} steps'} |",
    ])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    B.common_args(p)
    p.add_argument("--full", action="store_true", help="the micro-final network as the preset has it")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--warm-cache", action="store_true", help="let inductor reuse its on-disk caches (the first "
                                                             "call then measures a cache hit, not a compilation)")
    return p


def main(argv: list[str] | None = None) -> int:
    return B.cli(parser, run, table, argv)


if __name__ == "__main__":
    sys.exit(main())
