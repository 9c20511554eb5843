.PHONY: test test-fast bench bench-quick bench-gpu

test:            ## the full suite (what CI runs)
	python -m pytest -q

test-fast:       ## skip the slow end-to-end tests
	python -m pytest -q -m "not slow"

bench:           ## CPU benchmark suite; writes docs/benchmarks-speed.md (~15 min on 2 cores)
	python bench/run_all.py

bench-quick:     ## smoke-test the benchmark scripts
	python bench/run_all.py --quick

bench-gpu:       ## on a CUDA machine: epoch with/without bf16 and channels_last, supernet vs fixed (< 8 min)
	bash bench/gpu.sh
