"""Find the host-device synchronisation points of the hot loop without a GPU.

Runs one shared step (``search.shared_step``), one controller update
and ``start_epoch`` on CPU under a ``TorchFunctionMode`` that records every call that synchronises the host
with a CUDA device when the tensor lives there: ``item``, ``bool``/``int``/``float`` of a tensor, ``tolist``,
``cpu``/``numpy``, a ``to``/``copy_`` or ``torch.tensor(..., device=...)`` that moves host data to the device
(a non-pinned host-to-device copy waits for the stream). Each call is attributed to the innermost frame in
``enas`` or ``bench`` (and to the torch function it happened in, if any). Whether it would really
synchronise depends on where the tensor lives on CUDA: a ``to(device)`` of a tensor already there is free
(the per-parameter ``to`` inside ``clip_grad_norm_``), and ``item`` of Adam's step counter reads a host
tensor; ``docs/benchmarks-speed.md`` classifies the sites found.

    python bench/sync_audit.py
"""

from __future__ import annotations

import argparse
import collections
import sys
import traceback

import common as B

WATCH = {"item", "__bool__", "__int__", "__float__", "tolist", "cpu", "numpy", "to", "tensor", "__index__"}


def _site() -> tuple[str, str]:
    """(innermost enas/bench frame, innermost torch frame above it or '')."""
    inner_torch = ""
    for fr in reversed(traceback.extract_stack()[:-2]):
        f = fr.filename.replace("\\", "/")
        if f.endswith("sync_audit.py"):
            continue
        if "/enas/" in f or "/bench/" in f:
            short = f.split("/src/")[-1] if "/src/" in f else "bench/" + f.split("/bench/")[-1]
            return f"{short}:{fr.lineno} ({fr.name}): {fr.line}", inner_torch
        if "/torch/" in f and not inner_torch:
            inner_torch = f"torch/{f.split('/torch/')[-1]}:{fr.lineno} ({fr.name})"
    return "?", inner_torch


def audit(fn) -> collections.Counter:
    import torch
    from torch.overrides import TorchFunctionMode

    hits: collections.Counter = collections.Counter()

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            name = getattr(func, "__name__", "")
            if name in WATCH:
                moves = True
                if name == "to":
                    # only host->device moves matter; on this CPU run flag the ones naming a device explicitly
                    dev = kwargs.get("device") or next((a for a in args[1:] if isinstance(a, (str, torch.device))), None)
                    moves = dev is not None
                if name == "tensor":
                    moves = kwargs.get("device") is not None
                if moves:
                    site, inner = _site()
                    where = f"inside {inner}, called from {site}" if inner else site
                    hits[f"{name}  <-  {where}"] += 1
            return func(*args, **kwargs)

    with Mode():
        fn()
    return hits


def run(args) -> dict:
    from enas import search
    B.setup_threads(args.threads)
    cfg = B.load_cfg("micro-search", ["run.device=cpu", "shared.batch_size=4", "controller.num_aggregate=2",
                                      "controller.train_steps=1"])
    run_ = B.make_run(cfg, n_train=2000, n_valid=200)
    arch = B.random_archs(run_, 1)[0]
    search.start_epoch(run_)
    res = {}
    res["start_epoch (once per epoch)"] = audit(lambda: search.start_epoch(run_))
    B.shared_step(run_, arch)
    res["search.shared_step (every step)"] = audit(lambda: search.shared_step(run_, arch))
    res["search.train_controller, 1 update of 2 archs"] = audit(lambda: search.train_controller(run_))
    return {k: dict(v) for k, v in res.items()}


def table(r: dict) -> str:
    out = []
    for phase, hits in r.items():
        out.append(f"* {phase}: {sum(hits.values())} call(s)")
        for k, n in sorted(hits.items(), key=lambda kv: -kv[1]):
            out.append(f"  * {n} x `{k}`")
    return "\n".join(out)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    B.common_args(p, device=False)
    return p


def main(argv: list[str] | None = None) -> int:
    return B.cli(parser, run, table, argv)


if __name__ == "__main__":
    sys.exit(main())
