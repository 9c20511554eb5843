"""Print the short summary table of ``bench/gpu.sh`` from the JSON files it wrote.

    python bench/gpu_table.py DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import common as B


def _load(d: Path, name: str) -> dict | None:
    p = d / name
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def summary(d: Path) -> str:
    out = []
    ep = _load(d, "epoch.json")
    m = (ep or {}).get("machine", {})
    out.append(f"GPU benchmarks: {m.get('gpu', '?')}, torch {m.get('torch', '?')}, CUDA {m.get('cuda', '?')}, "
               f"{m.get('date', '?')}")
    out.append("")
    out.append("| micro search epoch (batch 160) | step | imgs/s | ctrl update | epoch | 150 epochs | <= 1 h |")
    out.append("|---|---|---|---|---|---|---|")
    for x in (ep or {}).get("rows", []):
        name = f"bf16={x['bf16']} cl={x['channels_last']}" + (" + host read/step" if x.get("host_sync") == "on" else "")
        ok = "yes" if x["projected_hours_150"] <= 1.0 else "NO"
        out.append(f"| {name} | {B.fmt_s(x['t_step'])} | {x['images_per_s']:.0f} | {B.fmt_s(x['t_ctrl_step'])} "
                   f"| {x['epoch_s']:.1f} s | {x['projected_hours_150']:.2f} h | {ok} |")
    if not ep:
        out.append("| (epoch benchmark missing) | | | | | | |")
    sv = _load(d, "supernet_vs_fixed.json")
    out += ["", "| space | batch | supernet/fixed time | <= 1.10 | peak mem supernet/fixed | <= 1.2 |",
            "|---|---|---|---|---|---|"]
    for s, r in ((sv or {}).get("spaces") or {}).items():
        mem = r.get("mem_ratio_median", float("nan"))
        out.append(f"| {s} | {r['batch']} | {r['ratio_median']:.3f} | {'yes' if r['ratio_median'] <= 1.10 else 'NO'} "
                   f"| {mem:.3f} | {'yes' if mem <= 1.2 else 'NO'} |")
    if not sv:
        out.append("| (supernet_vs_fixed missing) | | | | | |")
    ct = _load(d, "controller.json")
    if ct:
        out += ["", f"controller per shared step: {100 * ct['controller_share']:.2f} % of a child step "
                    f"(target <= 2 %); child step {B.fmt_s(ct['t_child'])}, sample 1 {B.fmt_s(ct['t_sample1'])}, "
                    f"update {B.fmt_s(ct['t_update'])}"]
    else:
        out += ["", "controller benchmark missing"]
    cf = _load(d, "compile_fixed.json")
    if cf and cf.get("partial"):  # cut short by its time limit
        done = (f"first compilation {B.fmt_s(cf['t_compile'])}" if "t_compile" in cf
                else "first compilation still running at the time limit")
        out += ["", f"torch.compile, micro-final ({cf['params']:,} params, batch {cf['batch']}): cut short "
                    f"({cf['partial']}); eager first step {B.fmt_s(cf['t_first_eager'])}, {done}"]
    elif cf:
        be = cf["break_even_steps"]
        out += ["", f"torch.compile, micro-final ({cf['params']:,} params, batch {cf['batch']}): eager "
                    f"{B.fmt_s(cf['t_eager'])}, compiled {B.fmt_s(cf['t_compiled'])} ({cf['speedup']:.2f}x); "
                    f"first call {B.fmt_s(cf['t_compile'])}, next values {B.fmt_s(cf['t_second_value'])} / "
                    f"{B.fmt_s(cf['t_third_value'])}; pays off after "
                    + ("never" if be is None else f"{be:.0f} steps")]
    else:
        out += ["", "compile benchmark missing (cut short or failed)"]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    print(summary(Path(argv[0] if argv else ".")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
