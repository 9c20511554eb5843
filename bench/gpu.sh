#!/usr/bin/env bash
# Speed benchmarks on one CUDA GPU (written for an H100/H200), under 8 minutes; prints a short
# table last. Every step has its own time limit, so the whole script stays inside 8 minutes even when a
# step is slower than expected (a step cut short keeps what it had measured).
#
#   bash bench/gpu.sh            # results (JSON) in a temporary folder, or OUT=dir bash bench/gpu.sh
#
# 1. one epoch of the paper's micro search (20 channels, 6+2 cells, batch 160, 45,000 images 32x32, random
#    data) with bf16 x channels_last on/off, and once with a host read per step (what the per-step
#    non-finite check cost before enas.guard); projected hours for 150 epochs;
# 2. supernet step / fixed-model step and peak memory (torch.cuda.max_memory_allocated), micro, macro, rnn,
#    at the presets' batch sizes, 5 random architectures each;
# 3. controller cost per shared step at the micro search configuration;
# 4. torch.compile for final training: the micro-final network (paper cell, 36 channels, 15+2 cells, batch
#    144) eager vs compiled, compile time and break-even (last: it is the one allowed to run out of time).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d -t enas-gpu-bench-XXXX)}"
mkdir -p "$OUT"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1

if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "bench/gpu.sh: no CUDA device visible to torch" >&2
    exit 2
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true

step() {  # step LIMIT_S NAME ARGS...: run one benchmark under a time limit, never stop the script
    local limit=$1 name=$2; shift 2
    local t0=$SECONDS
    echo "== $name (limit ${limit}s)" >&2
    timeout --signal=INT --kill-after=5 "$limit" python "$@" > "$OUT/$name.txt" 2> "$OUT/$name.log"
    local rc=$?
    [ $rc -eq 0 ] || echo "   $name exited with $rc (see $OUT/$name.log)" >&2
    echo "   $name: $((SECONDS - t0)) s" >&2
}

# the limits add up to 455 s (+ 5 s grace each): under 8 minutes with the start-up
# epoch: each variant stops its shared phase after 15 s and extrapolates; no new variant after 140 s
step 180 epoch bench/epoch.py --device cuda --budget-s 15 --total-budget-s 140 \
    --variants on:on,on:on:on,off:off,on:off,off:on \
    --out "$OUT/epoch.json"
step 100 supernet_vs_fixed bench/supernet_vs_fixed.py --device cuda --batch 0 --archs 5 --repeats 5 \
    --out "$OUT/supernet_vs_fixed.json"
step 45 controller bench/controller.py --device cuda --repeats 5 --out "$OUT/controller.json"
step 130 compile_fixed bench/compile_fixed.py --device cuda --full --repeats 10 --out "$OUT/compile_fixed.json"

echo "results: $OUT" >&2
echo
python bench/gpu_table.py "$OUT"
