"""Language-model final training checkpoints at every epoch end and resumes exactly."""

import json

import torch

from enas import config as C
from enas.rundir import Stopped
from enas.spaces import rnn
from enas.text_task import train_fixed_lm


def test_stopped_and_resumed_lm_training_equals_a_straight_run(tmp_path, one_thread):
    cfg = C.load_config("tiny", space="rnn", overrides=["train.epochs=2", "run.progress=false"])
    arch = rnn.arch_from_actions([0] + [0, 1] * 2, rnn.RNNSpace(num_nodes=3))
    straight = train_fixed_lm(cfg, arch, tmp_path / "a")
    calls = {"n": 0}

    def stop_after_first_epoch():
        calls["n"] += 1
        return True

    try:
        train_fixed_lm(cfg, arch, tmp_path / "b", stop=stop_after_first_epoch)
        raise AssertionError("expected a stop")
    except Stopped as e:
        assert "--resume" in str(e)
    assert not (tmp_path / "b" / "result.json").exists()
    resumed = train_fixed_lm(cfg, arch, tmp_path / "b", resume=True)
    for k in ("valid_ppl", "test_ppl", "params", "best_epoch"):
        assert resumed[k] == straight[k], k
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
    rows = lambda d: [{k: v for k, v in json.loads(x).items() if k != "time"}  # noqa: E731
                      for x in (d / "metrics.jsonl").read_text().splitlines()]
    assert rows(tmp_path / "a") == rows(tmp_path / "b")


def test_a_non_finite_step_resets_the_carried_hidden_state(tmp_path, one_thread):
    import pathlib

    from enas import search as S
    cfg = C.load_config("tiny", space="rnn", overrides=["run.progress=false"])
    run = S.setup(cfg, pathlib.Path(tmp_path), lambda: False)
    S.start_epoch(run)
    S.shared_step(run, run.epoch_archs[0])
    assert run.task.hidden is not None and torch.isfinite(run.task.hidden).all()
    run.task.hidden = torch.full_like(run.task.hidden, float("nan"))  # a blown-up state
    before = {k: v.clone() for k, v in run.model.state_dict().items()}
    moments = {id(p): st["momentum_buffer"].clone() for p, st in run.opt.state.items()}
    S.shared_step(run, run.epoch_archs[1])
    # decided on the device: the hidden state is zeros, and nothing was updated, momentum included
    assert run.task.hidden is not None and bool((run.task.hidden == 0).all())
    assert all(torch.equal(before[k], v) for k, v in run.model.state_dict().items())  # the step was skipped
    assert all(torch.equal(moments[id(p)], st["momentum_buffer"]) for p, st in run.opt.state.items())
    assert run.guard.sync("test", "none") == 1 and run.guard.total == 1 and int(run.guard.counts[0]) == 1
    S.shared_step(run, run.epoch_archs[2])
    assert run.guard.sync("test", "none") == 0 and int(run.guard.counts[0]) == 0 and torch.isfinite(run.task.hidden).all()
    assert not all(torch.equal(before[k], v) for k, v in run.model.state_dict().items())  # this one stepped
    run.metrics.close()
