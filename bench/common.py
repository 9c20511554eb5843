"""Shared helpers for the speed benchmarks in ``bench/`` (plain scripts; not part of the package or the tests).

Timing
    ``interleave`` runs several variants in turn (A, B, A, B, ...) after a warm-up and returns every time, so that
    load from other processes hits all variants alike; results are reported as medians and ratios of medians.
    ``paired`` does the same but restores the run's data and random state before each variant, so every variant
    of one round sees the same batch, the same augmentation and the same dropout masks.

Memory (method)
    * CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats`` around one step (exact peak of
      the caching allocator's live tensors).
    * CPU: there is no allocator peak counter, so we report a *proxy*: the bytes of the distinct tensors that
      autograd saves for backward during the forward (recorded with ``torch.autograd.graph.saved_tensors_hooks``,
      deduplicated by storage, parameters excluded) plus the bytes of the parameters, the gradients present after
      backward and the optimizer state. Saved activations dominate the peak of a training step, and the proxy
      is deterministic (no allocator caching), so ratios between models are meaningful. As a cross-check we also
      give the growth of the process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``)
      during the step, which includes allocator slack and temporaries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import platform
import random
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterable

import torch

ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------------------------ basics
def setup_threads(n: int = 1) -> None:
    torch.set_num_threads(n)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set (after parallel work started)
        pass


def sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def median(xs: Iterable[float]) -> float:
    xs = list(xs)
    return statistics.median(xs) if xs else float("nan")


def timed(fn: Callable[[], object], device: torch.device | str = "cpu") -> float:
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


def interleave(variants: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 1,
               device: torch.device | str = "cpu", before: Callable[[], None] | None = None) -> dict[str, list[float]]:
    """Run each variant ``warmup`` times, then ``repeats`` rounds of A, B, ... (order rotated every round so
    no variant always runs first). ``before()`` runs before every single call (untimed). Returns all times."""
    names = list(variants)
    for _ in range(warmup):
        for n in names:
            if before:
                before()
            variants[n]()
    sync(device)
    times = {n: [] for n in names}
    for r in range(repeats):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            if before:
                before()
            times[n].append(timed(variants[n], device))
    return times


def summarize(times: dict[str, list[float]]) -> dict[str, float]:
    return {n: median(t) for n, t in times.items()}


def fmt_s(s: float) -> str:
    if s != s:  # nan
        return "n/a"
    if s >= 1.0:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.1f} ms"
    return f"{s * 1e6:.0f} us"


def fmt_mb(b: float) -> str:
    return "n/a" if b != b else f"{b / 2**20:.1f} MiB"


# ------------------------------------------------------------------------------------------------ memory
def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    try:
        s = t.untyped_storage()
        return s.data_ptr(), s.nbytes()
    except Exception:  # noqa: BLE001 - sparse, nested, fake... count by the view itself
        return id(t), t.numel() * t.element_size()


@contextlib.contextmanager
def saved_bytes(exclude: Iterable[torch.Tensor] = ()):
    """Within the block, record the distinct storages saved for backward; ``rec["bytes"]`` after the block."""
    skip = {_storage_key(p)[0] for p in exclude}
    seen: dict[int, int] = {}
    rec = {"bytes": 0}

    def pack(t: torch.Tensor):
        ptr, nbytes = _storage_key(t)
        if ptr not in skip and ptr not in seen:
            seen[ptr] = nbytes
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield rec
    rec["bytes"] = sum(seen.values())


def tensor_bytes(ts: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in ts)


def optimizer_bytes(opt: torch.optim.Optimizer) -> int:
    return sum(v.numel() * v.element_size() for st in opt.state.values() for v in st.values()
               if isinstance(v, torch.Tensor))


def steady_optimizer_bytes(opt: torch.optim.Optimizer, params: list[torch.Tensor]) -> int:
    """Optimizer state once every parameter has had a gradient (state bytes per parameter byte, from the
    parameters that have state, applied to all)."""
    have = [p for p in params if p in opt.state and opt.state[p]]
    if not have:  # no step yet: SGD keeps one momentum buffer per parameter when momentum > 0
        sgd = isinstance(opt, torch.optim.SGD) and opt.param_groups[0].get("momentum", 0) > 0
        return tensor_bytes(params) if sgd else 0
    per = optimizer_bytes_of(opt, have) / max(1, tensor_bytes(have))
    return int(round(per * tensor_bytes(params)))


def optimizer_bytes_of(opt: torch.optim.Optimizer, params: list[torch.Tensor]) -> int:
    return sum(v.numel() * v.element_size() for p in params for v in opt.state[p].values()
               if isinstance(v, torch.Tensor) and v.dim() > 0)


def _malloc_trim() -> None:
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except Exception:  # noqa: BLE001 - not glibc
        pass


def _hwm_kib() -> int:
    try:
        return int(re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))
    except Exception:  # noqa: BLE001
        return -1


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except Exception:  # noqa: BLE001
        return False


def _rss_kib() -> int:
    try:
        return int(re.search(r"VmRSS:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))
    except Exception:  # noqa: BLE001
        return -1


def step_memory(step: Callable[[], None], model: torch.nn.Module, opt: torch.optim.Optimizer,
                device: torch.device | str) -> dict[str, float]:
    """Memory of one training step. CUDA: exact allocator peak. CPU: the proxy described in the module doc
    (``proxy``), its parts, and the peak-RSS growth during the step (``rss_peak``)."""
    device = torch.device(device)
    params = list(model.parameters())
    out: dict[str, float] = {}
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        torch.cuda.synchronize()
        out["peak"] = float(torch.cuda.max_memory_allocated())
        out["peak_over_base"] = float(torch.cuda.max_memory_allocated() - base)
    _malloc_trim()
    rss0 = _rss_kib()
    reset = _reset_hwm()
    with saved_bytes(exclude=params) as rec:
        step()
    hwm = _hwm_kib()
    out["saved"] = float(rec["bytes"])
    out["params"] = float(tensor_bytes(params))
    out["grads"] = float(tensor_bytes(p.grad for p in params if p.grad is not None))
    out["opt_state"] = float(optimizer_bytes(opt))
    out["opt_state_full"] = float(steady_optimizer_bytes(opt, params))
    # the optimizer state counted at its steady size: in a search every op is sampled sooner or later, so
    # every supernet parameter ends up with a momentum buffer
    out["proxy"] = out["saved"] + out["params"] + out["grads"] + out["opt_state_full"]
    out["rss_peak"] = float((hwm - rss0) * 1024) if reset and hwm > 0 and rss0 > 0 else float("nan")
    return out


# ------------------------------------------------------------------------------------------- environment
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def emit_table(lines: list[str], out: str | None) -> str:
    """Print a markdown table with a machine line under it, and append both to ``out`` (a markdown file) if given."""
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = f"{os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "n/a"
    text = "\n".join([*lines, "", f"Machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
                                  f"{when}; load average at the end {load}."])
    print(text)
    if out:
        with open(out, "a") as f:
            f.write("\n" + text + "\n")
    return text


def machine_info(device: torch.device | str = "cpu") -> dict:
    info = {
        "date": datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a",
    }
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info


def write_json(path: Path, obj: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1, default=str) + "\n")


def emit(result: dict, out: str | None) -> None:
    """Write a result as JSON to ``out`` when one is given."""
    if out:
        write_json(Path(out), result)


def cli(parser: Callable, run: Callable, table: Callable, argv: list[str] | None = None) -> int:
    """The ``main`` of every benchmark script: parse, run, print the table, write the JSON if asked."""
    args = parser().parse_args(argv)
    res = run(args)
    print(table(res))
    emit(res, args.out)
    return 0


# --------------------------------------------------------------------------------------- synthetic data
_CACHE: dict = {}


def synthetic_image_splits(*, n_train: int = 45_000, n_valid: int = 5_000, n_test: int = 1_000, size: int = 32,
                           channels: int = 3, classes: int = 10, seed: int = 0):
    """CIFAR-10-shaped random uint8 images, as ``enas.tasks.load_image_splits`` returns them."""
    from enas.data.images import ImageDataset
    from enas.tasks import Split
    key = ("img", n_train, n_valid, n_test, size, channels, classes, seed)
    if key in _CACHE:
        return _CACHE[key]
    g = torch.Generator().manual_seed(seed)

    def part(n):
        return (torch.randint(0, 256, (n, channels, size, size), generator=g, dtype=torch.uint8),
                torch.randint(0, classes, (n,), generator=g))

    tx, ty = part(n_train)
    vx, vy = part(n_valid)
    sx, sy = part(n_test)
    ds = ImageDataset("synthetic-cifar10", tx, ty, sx, sy, tuple(f"c{i}" for i in range(classes)))
    _CACHE.clear()  # keep at most one data set alive
    _CACHE[key] = ds, Split(tx, ty), (Split(vx, vy) if n_valid else None), Split(sx, sy)
    return _CACHE[key]


def synthetic_corpus(*, vocab: int = 10_000, n_train: int = 200_000, n_valid: int = 20_000, seed: int = 0):
    from enas.data.text import Corpus
    g = torch.Generator().manual_seed(seed)
    words = tuple(f"w{i}" for i in range(vocab))
    mk = lambda n: torch.randint(0, vocab, (n,), generator=g)  # noqa: E731
    return Corpus(words, mk(n_train), mk(n_valid), mk(n_valid))


@contextlib.contextmanager
def patched(obj, name: str, value):
    old = getattr(obj, name)
    setattr(obj, name, value)
    try:
        yield
    finally:
        setattr(obj, name, old)


def load_cfg(preset: str, overrides: list[str] = ()):
    from enas import config as C
    return C.load_config(preset, overrides=["run.progress=false", "run.report=false", *overrides])


def make_run(cfg, *, n_train: int = 45_000, n_valid: int = 5_000, corpus_tokens: int = 200_000,
             image_size: int = 32):
    """A real ``enas.search.SearchRun`` built by ``search.setup`` on synthetic data (CIFAR-shaped images or a
    random corpus of the configured vocabulary). The run directory is a temporary folder."""
    from enas import search, text_task
    out = Path(tempfile.mkdtemp(prefix="enas-bench-"))
    if cfg.space == "rnn":
        corpus = synthetic_corpus(vocab=cfg.data.vocab_size, n_train=corpus_tokens,
                                  n_valid=max(corpus_tokens // 10, 4 * cfg.shared.batch_size * 40))
        with patched(text_task, "load_corpus", lambda *a, **k: corpus):
            return search.setup(cfg, out, lambda: False)
    img = synthetic_image_splits(n_train=n_train, n_valid=n_valid, seed=cfg.run.seed, size=image_size)
    with patched(search, "load_image_splits", lambda *a, **k: img):
        return search.setup(cfg, out, lambda: False)


# ------------------------------------------------------------------------------- run state (pairing)
def snapshot(run) -> dict:
    """Everything that decides the next batch, augmentation and dropout masks."""
    task = {k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in run.task.state_dict().items()}
    gens = {k: g.get_state() for k, g in run.gens.items()}
    st = {"task": task, "gens": gens, "torch": torch.get_rng_state(), "py": random.getstate()}
    if torch.cuda.is_available() and run.device.type == "cuda":
        st["cuda"] = torch.cuda.get_rng_state()
    return st


def restore(run, st: dict) -> None:
    run.task.load_state_dict({k: (v.clone() if isinstance(v, torch.Tensor) else v) for k, v in st["task"].items()})
    for k, s in st["gens"].items():
        run.gens[k].set_state(s)
    torch.set_rng_state(st["torch"])
    random.setstate(st["py"])
    if "cuda" in st:
        torch.cuda.set_rng_state(st["cuda"])


def paired(run, variants: dict[str, Callable[[], object]], *, repeats: int, warmup: int = 1) -> dict[str, list[float]]:
    """``interleave`` where every variant of a round starts from the same data/RNG state."""
    names = list(variants)
    times = {n: [] for n in names}
    for r in range(warmup + repeats):
        st = snapshot(run)
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            restore(run, st)
            t = timed(variants[n], run.device)
            if r >= warmup:
                times[n].append(t)
    return times


def fixed_twin(run, arch):
    """The fixed model of ``arch`` at the supernet's width, with the supernet's weights for its ops, and a run
    view that trains it with the same step function and optimizer settings."""
    from enas import build, text_task
    from enas.guard import StepGuard
    cfg = run.cfg
    if cfg.space == "rnn":
        vocab = run.model.vocab_size
        fixed = text_task.lm_model(cfg.net, run.space, vocab, arch)
    else:
        nc = run.model.classifier.out_features
        in_ch = run.model.stem[0].in_channels
        fixed = build.make_cnn(cfg.space, run.space, cfg.net, num_classes=nc, in_channels=in_ch, arch=arch)
        build.use_batch_stats(fixed)  # same BatchNorm mode as the supernet in search
    sd = run.model.state_dict()
    try:
        fixed.load_state_dict({k: sd[k] for k in fixed.state_dict()})
    except (KeyError, RuntimeError):
        pass
    fixed = fixed.to(run.device)
    if run.cfg.space != "rnn" and build.channels_last(cfg.run.channels_last, run.device, cfg.space):
        fixed = fixed.to(memory_format=torch.channels_last)
    guard = StepGuard(run.device, cfg.run.max_nonfinite, "shared.lr_max")  # its own skip flag and counters
    opt = build.sgd(fixed.parameters(), cfg.shared, run.device, found_inf=guard.found_inf)
    return dataclasses.replace(run, model=fixed, opt=opt, guard=guard)


def shared_step(run, arch) -> None:
    """``enas.search.shared_step`` (the real training step), starting a new data epoch when one runs out."""
    from enas import search
    task = run.task
    if hasattr(task, "perm") and (task.pos + 1) * task.batch_size > len(task.perm):
        task.start_epoch()
    search.shared_step(run, arch)


def sample_one(run):
    """One architecture from the run's controller, as a single (unbatched) call would give it."""
    from enas import search
    with torch.no_grad():
        actions = run.controller(1, generator=run.gens["ctrl"]).actions.cpu()
    return search.decode(run, actions)[0]


def random_archs(run, n: int, seed: int = 0) -> list:
    rng = random.Random(seed)
    return [run.mod.sample_uniform(run.space, rng) for _ in range(n)]


def common_args(p, *, device: bool = True) -> None:
    if device:
        p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (CPU)")
    p.add_argument("--out", default=None, help="write the result as JSON here")

