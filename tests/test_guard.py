"""The device-side skip of non-finite steps (enas.guard) and the fused SGD it drives (enas.build.sgd)."""

import logging
from types import SimpleNamespace

import pytest
import torch

from enas import build
from enas.guard import StepGuard, skip_mask
from enas.rundir import NonFiniteError

HP = SimpleNamespace(lr_max=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)


def _params(seed: int, n: int = 4) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(3, 5, generator=g)) for _ in range(n)]


def test_fused_sgd_with_eager_buffers_follows_torchs_lazy_sgd():
    """Supernet-like steps (each updates a different subset of parameters, some for the first time): the fused
    optimizer with zero buffers made up front takes the same trajectory as torch's foreach SGD."""
    a, b = _params(0), _params(0)
    fused = build.sgd(a, HP, torch.device("cpu"), found_inf=torch.zeros(1))
    ref = torch.optim.SGD(b, lr=HP.lr_max, momentum=HP.momentum, nesterov=True, weight_decay=HP.weight_decay,
                          foreach=True)
    g = torch.Generator().manual_seed(1)
    for subset in ([0, 1], [1, 2], [0, 3], [2], [0, 1, 2, 3]):
        for opt, ps in ((fused, a), (ref, b)):
            opt.zero_grad(set_to_none=True)
        for i in subset:
            grad = torch.randn(3, 5, generator=g)
            a[i].grad, b[i].grad = grad.clone(), grad.clone()
        fused.step()
        ref.step()
        for p, q in zip(a, b):
            torch.testing.assert_close(p, q, rtol=0, atol=1e-7)


def test_a_flagged_step_changes_nothing_and_is_counted():
    ps = _params(2)
    guard = StepGuard(torch.device("cpu"), max_run=3, hint="x")
    opt = build.sgd(ps, HP, torch.device("cpu"), found_inf=guard.found_inf)
    for p in ps:
        p.grad = torch.ones_like(p)
    bad = guard.check(torch.tensor(1.0), torch.tensor(2.0))
    opt.step()  # a finite step: parameters and momentum move
    assert float(bad) == 0.0 and not torch.equal(opt.state[ps[0]]["momentum_buffer"], torch.zeros(3, 5))
    before = [p.detach().clone() for p in ps]
    moments = [opt.state[p]["momentum_buffer"].clone() for p in ps]
    for p in ps:
        p.grad = torch.full_like(p, float("nan"))
    for loss, norm in ((torch.tensor(float("inf")), torch.tensor(1.0)), (torch.tensor(1.0), torch.tensor(float("nan")))):
        bad = guard.check(loss, norm)
        opt.step()
        assert float(bad) == 1.0
        assert all(torch.equal(p, q) for p, q in zip(ps, before))
        assert all(torch.equal(opt.state[p]["momentum_buffer"], m) for p, m in zip(ps, moments))
    assert guard.sync("here", "ckpt") == 2 and int(guard.counts[0]) == 2 and guard.total == 2


def test_sync_raises_on_the_longest_run_since_the_last_read(caplog):
    """A run of skips that ended before the read still stops the run: the longest run is what counts."""
    guard = StepGuard(torch.device("cpu"), max_run=3, hint="train.lr_max")
    one, inf = torch.tensor(1.0), torch.tensor(float("inf"))
    for loss in (inf, inf, inf, one):  # three in a row, then a good step
        guard.check(loss, one)
    with caplog.at_level(logging.WARNING, logger="enas"), pytest.raises(NonFiniteError) as e:
        guard.sync("epoch 0 step 4", "run/checkpoint.pt")
    assert str(e.value).startswith("3 consecutive non-finite steps") and "train.lr_max" in str(e.value)
    assert "3 non-finite step(s) skipped" in caplog.text


def test_sync_restarts_the_longest_run_and_counts_only_new_skips():
    guard = StepGuard(torch.device("cpu"), max_run=3, hint="x")
    one, inf = torch.tensor(1.0), torch.tensor(float("inf"))
    for loss in (inf, inf, one):
        guard.check(loss, one)
    assert guard.sync("a", "c") == 2
    guard.check(inf, one)
    guard.check(one, one)
    assert guard.sync("b", "c") == 1  # the longest run since the last read is 1 < 3: no error
    guard.check(one, one)
    assert guard.sync("c", "c") == 0 and guard.total == 3


def test_guard_state_round_trips_and_reads_legacy_counters():
    guard = StepGuard(torch.device("cpu"), max_run=5, hint="x")
    guard.check(torch.tensor(float("nan")), torch.tensor(1.0))
    other = StepGuard(torch.device("cpu"), max_run=5, hint="x")
    other.load_checkpoint({"guard": guard.state_dict()})
    assert torch.equal(other.counts, guard.counts) and other.total == 1
    legacy = StepGuard(torch.device("cpu"), max_run=5, hint="x")
    legacy.load_checkpoint({"nonfinite_run": 2, "nonfinite_total": 7})  # written before the guard
    assert legacy.total == 7 and legacy.counts.tolist() == [2.0, 2.0, 7.0]


def test_a_foreach_optimizers_checkpoint_loads_into_the_fused_one():
    """Checkpoints written before the fused optimizers: loading one keeps the fused SGD fused (a foreach SGD
    refuses found_inf), fills the lazily made momentum buffers, and the guard still skips a flagged step."""
    ps = _params(3)
    lazy = torch.optim.SGD(ps, lr=0.1, momentum=0.9, foreach=True)
    ps[0].grad = torch.ones_like(ps[0])
    lazy.step()
    guard = StepGuard(torch.device("cpu"), max_run=3, hint="x")
    opt = build.sgd(ps, HP, torch.device("cpu"), found_inf=guard.found_inf)
    build.load_optimizer_state(opt, lazy.state_dict())
    assert all(g["fused"] and not g["foreach"] for g in opt.param_groups)
    assert all(opt.state[p]["momentum_buffer"] is not None for p in ps)
    assert torch.equal(opt.state[ps[0]]["momentum_buffer"], torch.ones(3, 5))
    for p in ps:
        p.grad = torch.ones_like(p)
    before = [p.detach().clone() for p in ps]
    guard.found_inf.fill_(1.0)
    opt.step()  # skipped on the device
    assert all(torch.equal(p, q) for p, q in zip(ps, before))
    guard.found_inf.zero_()
    opt.step()  # the fused kernel accepts the mix of loaded and new buffers
    assert not any(torch.equal(p, q) for p, q in zip(ps, before))


def test_a_foreach_adams_checkpoint_loads_into_the_fused_one():
    ps = _params(4, n=2)
    old = torch.optim.Adam(ps, lr=0.01, betas=(0.0, 0.999), eps=1e-3, foreach=True)
    for p in ps:
        p.grad = torch.ones_like(p)
    old.step()
    new = torch.optim.Adam(ps, lr=0.01, betas=(0.0, 0.999), eps=1e-3, fused=True)
    build.load_optimizer_state(new, old.state_dict())
    assert all(g["fused"] and not g["foreach"] for g in new.param_groups)
    new.step()
    assert all(float(new.state[p]["step"]) == 2.0 for p in ps)


def test_skip_mask_zeroes_non_finite_values():
    v = torch.tensor([float("nan"), float("inf"), 2.0])
    assert torch.equal(skip_mask(torch.tensor(1.0), v), torch.zeros(3))
    assert torch.equal(skip_mask(torch.tensor(0.0), torch.tensor([1.0, 2.0])), torch.tensor([1.0, 2.0]))


def test_train_skip_then_stop_then_resume_is_exact(tmp_path, monkeypatch, one_thread):
    """`enas train` with a poisoned batch (NaN images: non-finite loss, NaN BatchNorm statistics) that is
    skipped, then stopped before the next BN rollback point and resumed, ends exactly as an uninterrupted run:
    the checkpoint holds the kept BN statistics, and rollback points depend on the step count only."""
    import json
    import random

    from enas import config as C, tasks
    from enas import train as T
    from enas.rundir import Stopped
    from enas.spaces import micro

    orig = tasks.ImageTask.next_train_batch

    def poisoned(self):
        x, y = orig(self)
        return (x * float("nan"), y) if self.pos == 3 else (x, y)
    monkeypatch.setattr(tasks.ImageTask, "next_train_batch", poisoned)
    cfg = C.load_config("tiny", overrides=["train.epochs=1", "train.batch_size=32", "run.log_every=8",
                                           "search.checkpoint_every=0"])
    arch = micro.sample_uniform(build.make_space(cfg), random.Random(0))
    straight = T.train_fixed(cfg, arch, tmp_path / "a")
    calls = {"n": 0}

    def stop() -> bool:  # asked once after every step (twice once it says yes): stop after step 5
        calls["n"] += 1
        return calls["n"] >= 5
    with pytest.raises(Stopped):
        T.train_fixed(cfg, arch, tmp_path / "b", stop=stop)
    from enas import checkpoint
    saved = checkpoint.load(tmp_path / "b" / "checkpoint.pt")
    assert saved["global_step"] == 5 and saved["nonfinite_total"] == 1
    assert all(torch.isfinite(v).all() for v in saved["model"].values() if v.is_floating_point())
    resumed = T.train_fixed(cfg, arch, tmp_path / "b", resume=True)
    assert resumed["test_acc"] == straight["test_acc"]
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.isfinite(v).all() for v in a.values() if v.is_floating_point())
    rows = lambda d: [{k: v for k, v in json.loads(x).items() if k != "time"}  # noqa: E731
                      for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert rows(tmp_path / "a") == rows(tmp_path / "b") and rows(tmp_path / "a")[0]["nonfinite_steps"] == 1
