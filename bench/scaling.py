"""How a supernet step's time and memory grow with batch size, number of cells and number of candidate ops.

Micro space, 20 channels, 32x32 images, one fixed architecture per sweep (so that only the swept quantity
changes). Every sweep interleaves its points (A, B, C, ... repeated) and reports medians.

* batch: one supernet; the task's batch size is changed between calls.
* cells: supernets with ``num_layers`` normal cells (+ 2 reduction cells).
* candidates: supernets over ``KNOWN_OPS[:k]``, all running the *same* architecture, built from the first
  two ops only, so any growth is the cost of holding candidates that do not run. The fixed model of that
  architecture is timed alongside as the floor. Activation memory must stay flat; parameter and optimizer
  bytes grow (the unused candidates' weights exist), which is reported separately.

    python bench/scaling.py [--device cuda] [--batch 32]
"""

from __future__ import annotations

import argparse
import random
import sys

import common as B


def _arch_from(space, seed: int):
    from enas.spaces import micro
    return micro.sample_uniform(space, random.Random(seed))


def _mem(run, arch, device) -> dict:
    st = B.snapshot(run)
    m = B.step_memory(lambda: B.shared_step(run, arch), run.model, run.opt, device)
    B.restore(run, st)
    return m


def sweep_batch(args, batches: list[int]) -> list[dict]:
    cfg = B.load_cfg("micro-search", [f"run.device={args.device}", f"shared.batch_size={max(batches)}"])
    run = B.make_run(cfg, n_train=max(4000, 8 * max(batches)), n_valid=500)
    arch = _arch_from(run.space, args.seed)

    def at(b):
        def f():
            run.task.batch_size = b
            B.shared_step(run, arch)
        return f

    t = B.summarize(B.interleave({b: at(b) for b in batches}, repeats=args.repeats, warmup=1, device=args.device))
    rows = []
    for b in batches:
        run.task.batch_size = b
        m = _mem(run, arch, args.device)
        rows.append({"batch": b, "t": t[b], "t_per_sample": t[b] / b, "mem": m})
    return rows


def sweep_cells(args, layers: list[int]) -> list[dict]:
    runs = {}
    for n in layers:
        cfg = B.load_cfg("micro-search", [f"run.device={args.device}", f"shared.batch_size={args.batch}",
                                          f"net.num_layers={n}"])
        runs[n] = B.make_run(cfg, n_train=4000, n_valid=500)
    arch = _arch_from(runs[layers[0]].space, args.seed)
    t = B.summarize(B.interleave({n: (lambda r=runs[n]: B.shared_step(r, arch)) for n in layers},
                                 repeats=args.repeats, warmup=1, device=args.device))
    rows = [{"num_layers": n, "cells": n + 2, "t": t[n], "t_per_cell": t[n] / (n + 2),
             "mem": _mem(runs[n], arch, args.device)} for n in layers]
    return rows


def sweep_ops(args, counts: list[int]) -> list[dict]:
    from enas.spaces.micro import KNOWN_OPS, MicroSpace
    base = MicroSpace(ops=KNOWN_OPS[:2])
    arch = _arch_from(base, args.seed)  # uses sep_conv_3x3 / sep_conv_5x5 only
    runs = {}
    for k in counts:
        cfg = B.load_cfg("micro-search", [f"run.device={args.device}", f"shared.batch_size={args.batch}",
                                          "space_cfg.ops=" + ",".join(KNOWN_OPS[:k])])
        runs[k] = B.make_run(cfg, n_train=4000, n_valid=500)
    fixed = B.fixed_twin(runs[counts[-1]], arch)
    variants = {k: (lambda r=runs[k]: B.shared_step(r, arch)) for k in counts}
    variants["fixed"] = lambda: B.shared_step(fixed, arch)
    t = B.summarize(B.interleave(variants, repeats=args.repeats, warmup=1, device=args.device))
    rows = []
    for k in counts:
        r = runs[k]
        rows.append({"ops": k, "names": list(KNOWN_OPS[:k]), "t": t[k], "t_over_fixed": t[k] / t["fixed"],
                     "params": sum(p.numel() for p in r.model.parameters()), "mem": _mem(r, arch, args.device)})
    rows.append({"ops": "fixed", "t": t["fixed"], "t_over_fixed": 1.0,
                 "params": sum(p.numel() for p in fixed.model.parameters()), "mem": _mem(fixed, arch, args.device)})
    return rows


def run(args) -> dict:
    B.setup_threads(args.threads)
    cpu = args.device == "cpu"
    batches = [int(x) for x in args.batches.split(",")] if args.batches else \
        ([8, 16, 32, 64] if cpu else [32, 64, 128, 160, 256])
    layers = [int(x) for x in args.layers.split(",")]
    counts = [int(x) for x in args.ops.split(",")]
    return {"machine": B.machine_info(args.device), "device": args.device, "batch": args.batch,
            "repeats": args.repeats,
            "batch_sweep": sweep_batch(args, batches), "cells_sweep": sweep_cells(args, layers),
            "ops_sweep": sweep_ops(args, counts)}


def _memcol(m: dict) -> str:
    if "peak" in m:
        return f"{B.fmt_mb(m['peak'])} | {B.fmt_mb(m['saved'])} | {B.fmt_mb(m['params'] + m['opt_state_full'])}"
    return f"{B.fmt_mb(m['proxy'])} | {B.fmt_mb(m['saved'])} | {B.fmt_mb(m['params'] + m['opt_state_full'])}"


def table(r: dict) -> str:
    key = "peak (CUDA)" if "peak" in r["batch_sweep"][0]["mem"] else "memory proxy"
    head = f"| time | vs first | {key} | saved activations | params + optimizer |"
    out = [f"Batch size (fixed architecture, 8 cells, 5 ops):", "", "| batch " + head,
           "|---|---|---|---|---|---|"]
    b0 = r["batch_sweep"][0]
    for x in r["batch_sweep"]:
        out.append(f"| {x['batch']} | {B.fmt_s(x['t'])} | {x['t'] / b0['t']:.2f}x (batch {x['batch'] / b0['batch']:.0f}x) "
                   f"| {_memcol(x['mem'])} |")
    out += ["", f"Cells (batch {r['batch']}, 5 ops):", "", "| cells " + head, "|---|---|---|---|---|---|"]
    c0 = r["cells_sweep"][0]
    for x in r["cells_sweep"]:
        out.append(f"| {x['cells']} | {B.fmt_s(x['t'])} | {x['t'] / c0['t']:.2f}x (cells {x['cells'] / c0['cells']:.2f}x) "
                   f"| {_memcol(x['mem'])} |")
    out += ["", f"Candidate ops (batch {r['batch']}, 8 cells, the same 2-op architecture in every supernet):", "",
            "| candidates | time | vs fixed model | " + key + " | saved activations | params + optimizer |",
            "|---|---|---|---|---|---|"]
    for x in r["ops_sweep"]:
        out.append(f"| {x['ops']} | {B.fmt_s(x['t'])} | {x['t_over_fixed']:.3f} | {_memcol(x['mem'])} |")
    return "\n".join(out)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    B.common_args(p)
    p.add_argument("--batch", type=int, default=16, help="batch of the cells and ops sweeps")
    p.add_argument("--batches", default="", help="comma list (default 8,16,32,64 on CPU; 32..256 on CUDA)")
    p.add_argument("--layers", default="3,6,9,12", help="normal cells (2 reduction cells are added)")
    p.add_argument("--ops", default="2,3,5,7,10", help="numbers of candidate ops (prefixes of KNOWN_OPS)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    return B.cli(parser, run, table, argv)


if __name__ == "__main__":
    sys.exit(main())
