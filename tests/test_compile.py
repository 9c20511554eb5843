"""`run.compile=on`: final training through torch.compile works, and drop-path's ramp does not recompile."""

import random
import shutil

import pytest
import torch
import torch._dynamo

from enas import build, config as C
from enas.spaces import micro
from enas.train import train_fixed

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                                 reason="torch.compile on CPU needs a C++ compiler (g++, c++ or clang++); none found")]


def test_compiled_final_training_runs_without_recompiling(tmp_path, monkeypatch):
    torch._dynamo.reset()
    # the drop-path probability changes every step (it ramps up over training): passed as a device tensor it
    # must not trigger a single recompilation
    monkeypatch.setattr(torch._dynamo.config, "error_on_recompile", True)
    # 8 channels: at tiny's 4, inductor hands convolution_backward a channels-last gradient of a 1x1 stride-2 conv
    # with 2 output channels, which corrupts the heap in torch 2.13 on CPU (docs/benchmarks.md 6.1)
    cfg = C.load_config("tiny", overrides=["run.compile=on", "train.epochs=2", "final_net.channels=8"])
    arch = micro.sample_uniform(build.make_space(cfg), random.Random(0))
    res = train_fixed(cfg, arch, tmp_path / "run")
    assert 0.0 <= res["test_acc"] <= 1.0 and (tmp_path / "run" / "model.pt").exists()
    state = torch.load(tmp_path / "run" / "model.pt", weights_only=True)
    assert not any(k.startswith("_orig_mod") for k in state)  # the plain model's names, loadable without compile
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
