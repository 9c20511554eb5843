"""Memory layout (issue #16): ``run.channels_last=auto`` on CPU, and what must hold in the channels-last layout:
the supernet computes its fixed model, and the same seed gives the same run."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest
import torch

from enas import api, build, checkpoint, config as C
from enas.models.macro import MacroNet
from enas.models.micro import MicroNet
from enas.models.nb201 import NB201Net
from enas.spaces import macro, micro, nb201

CPU = torch.device("cpu")
CL = torch.channels_last


def test_narrow_channels_last_is_refused_on_cpu_and_auto_stays_contiguous(tmp_path) -> None:
    """A channels-last 1x1 stride-2 conv with < 4 output channels corrupts the heap in torch 2.13's CPU backward
    (x: 32x4x8x8 channels-last, weight 2x4x1x1, stride 2, ``y.sum().backward()`` aborts within 200 tries)."""
    assert build.channels_last("auto", CPU, "micro", channels=4) is False
    with pytest.raises(C.ConfigError, match="needs at least 8 channels"):
        build.channels_last("on", CPU, "micro", channels=4)
    r = subprocess.run([sys.executable, "-m", "enas", "search", "--preset", "tiny", "--quiet", "--out", "r",
                        "run.channels_last=on"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "needs at least 8 channels" in r.stderr and not (tmp_path / "r").exists()


def test_auto_follows_the_measured_spaces() -> None:
    mkl = torch.backends.mkldnn.is_available()
    assert build.channels_last("auto", CPU, "micro") is mkl
    assert build.channels_last("auto", CPU, "nb201") is mkl
    assert build.channels_last("auto", CPU, "macro") is False  # no gain measured (docs/benchmarks.md 6.1)
    assert build.channels_last("auto", CPU, "rnn") is False
    for space in ("micro", "macro", "nb201", "rnn"):
        assert build.channels_last("on", CPU, space) is True
        assert build.channels_last("off", CPU, space) is False
        assert build.channels_last("auto", torch.device("cuda"), space) is True


def _same_weights(make):
    torch.manual_seed(0)
    sup, fixed = make(None), make(True)
    sd = sup.state_dict()
    fixed.load_state_dict({k: sd[k] for k in fixed.state_dict()})
    return sup.to(memory_format=CL), fixed.to(memory_format=CL)


@pytest.mark.parametrize("seed", range(3))
def test_supernet_equals_fixed_model_in_channels_last(seed: int, one_thread) -> None:
    x = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(seed)).contiguous(memory_format=CL)
    rng = random.Random(seed)
    cases = []
    sp = micro.MicroSpace(num_nodes=3)
    a = micro.sample_uniform(sp, rng)
    cases.append((a, lambda arch_on: MicroNet(sp, channels=8, num_layers=3, num_classes=5, in_channels=3,
                                              arch=a if arch_on else None, cell_residual=True)))
    sp2 = nb201.NB201Space()
    b = nb201.sample_uniform(sp2, rng)
    cases.append((b, lambda arch_on: NB201Net(sp2, channels=8, cells_per_stage=1, num_classes=5,
                                              arch=b if arch_on else None)))
    sp3 = macro.MacroSpace(num_layers=4)
    c = macro.sample_uniform(sp3, rng)
    cases.append((c, lambda arch_on: MacroNet(sp3, channels=8, num_classes=5, in_channels=3,
                                              arch=c if arch_on else None, double_channels=False)))
    for arch, make in cases:
        sup, fixed = _same_weights(make)
        for mode in (True, False):
            sup.train(mode)
            fixed.train(mode)
            torch.testing.assert_close(sup(x, arch)[0], fixed(x)[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("LAYOUT", ["off", "on"])
def test_same_seed_same_search_in_channels_last(tmp_path, LAYOUT, one_thread) -> None:
    over = [f"run.channels_last={LAYOUT}", "data.limit_per_class=20", "search.retrain=false", "run.report=false",
            "shared.batch_size=32", "net.channels=8"]
    runs = []
    for k in range(2):
        cfg = C.load_config("tiny", overrides=over)
        api.search(cfg, out=tmp_path / f"r{k}")
        runs.append(checkpoint.load(tmp_path / f"r{k}" / "checkpoint.pt"))
    a, b = runs
    assert torch.equal(a["epoch_actions"], b["epoch_actions"])
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert (tmp_path / "r0" / "archs.jsonl").read_text() == (tmp_path / "r1" / "archs.jsonl").read_text()
