"""Extension points (issue #15 item 1): one op table filled by ``enas.register_op``, a space of one's own added
by ``enas.register_space``, and the examples in ``examples/`` that use them end to end."""

from __future__ import annotations

import importlib.util
import json
import random
import sys

import pytest
import torch

import enas
from enas import build, config as C, ops, spaces, stats
from enas.spaces import macro, micro
from enas.spaces.base import PARAMETER_FREE, known_ops

from conftest import REPO


def _example(name: str):
    spec = importlib.util.spec_from_file_location(f"enas_example_{name}", REPO / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # (dataclasses look their module up)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def clean_registry():
    yield
    for name in ("gelu_conv_3x3", "shift", "tiny_op", "free_op"):
        enas.unregister_op(name)
    enas.unregister_space("chain")


class Scale(torch.nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1, c, 1, 1))

    def forward(self, x, stride=1):
        return (x * self.w)[:, :, ::stride, ::stride]


def test_register_once_reaches_every_reader(clean_registry):
    with pytest.raises(spaces.ArchError, match="unknown op 'tiny_op'"):
        build.make_space(C.load_config("tiny", overrides=["space_cfg.ops=identity,tiny_op"]))
    enas.register_op("tiny_op", lambda c, r: Scale(c))
    enas.register_op("free_op", lambda c, r: Pool(), parameter_free=True)
    assert "tiny_op" in known_ops("micro") and "tiny_op" in known_ops("macro") and "tiny_op" in ops.OPS
    assert known_ops("micro")[:10] == micro.KNOWN_OPS and known_ops("micro")[-2:] == ("tiny_op", "free_op")
    assert known_ops("macro")[:9] == macro.KNOWN_OPS
    assert "free_op" in PARAMETER_FREE and "free_op" in stats.PARAMETER_FREE and "tiny_op" not in PARAMETER_FREE
    assert "free_op" in ops.PARAMETER_FREE
    space = build.make_space(C.load_config("tiny", overrides=["space_cfg.ops=sep_conv_3x3,tiny_op,free_op"]))
    assert space.ops == ("sep_conv_3x3", "tiny_op", "free_op")
    # the collapse alarm counts the registered parameter-free op: 1 of 3 ops is free
    u, _ = stats.collapse_threshold(space.ops)
    assert u == pytest.approx(1 / 3)
    assert stats.is_collapsing({"sep_conv_3x3": 0.0, "tiny_op": 0.1, "free_op": 0.9})
    # the networks build it, in both image spaces
    arch = micro.sample_uniform(space, random.Random(0))
    net = build.make_cnn("micro", space, C.load_config("tiny").net, num_classes=3, in_channels=1)
    assert any(".tiny_op." in n for n, _ in net.named_parameters())
    logits, _ = net(torch.randn(2, 1, 8, 8), arch)
    assert logits.shape == (2, 3)
    mspace = macro.MacroSpace(num_layers=3, ops=("conv_3x3", "tiny_op"))
    mnet = build.make_cnn("macro", mspace, C.load_config("tiny").net, num_classes=3, in_channels=1)
    marc = macro.sample_uniform(mspace, random.Random(1))
    assert mnet(torch.randn(2, 1, 8, 8), marc)[0].shape == (2, 3)
    # the drawings name it
    from enas.viz import to_svg
    assert "tiny_op" in to_svg(micro.to_dict(micro.arch_from_actions([0, 1, 1, 1] * 4, space)), use_dot=False)
    # unregistering forgets it everywhere
    enas.unregister_op("tiny_op")
    enas.unregister_op("free_op")
    assert "tiny_op" not in known_ops("micro") and "tiny_op" not in ops.OPS and "free_op" not in PARAMETER_FREE
    assert set(PARAMETER_FREE) == {"avg_pool_3x3", "max_pool_3x3", "identity", "none", "skip_connect"}


class Pool(torch.nn.Module):
    def forward(self, x, stride=1):
        return torch.nn.functional.avg_pool2d(x, 3, stride=stride, padding=1, count_include_pad=False)


@pytest.mark.parametrize("name, why", [("sep_conv_3x3", "built-in"), ("bad.name", "letters"), ("", "letters"),
                                       ("x", "callable")])
def test_bad_registrations_are_refused(name, why, clean_registry):
    builder = None if why == "callable" else (lambda c, r: Scale(c))
    with pytest.raises(ValueError, match=why):
        enas.register_op(name, builder)
    with pytest.raises(ValueError, match="nb201"):
        enas.register_op("tiny_op", lambda c, r: Scale(c), spaces=("nb201",))
    with pytest.raises(ValueError, match="activations"):
        enas.register_op("tiny_op", lambda c, r: Scale(c), spaces=("rnn",))
    assert "tiny_op" not in ops.OPS  # a refused registration leaves nothing behind
    with pytest.raises(TypeError, match="register_op"):
        ops.OPS["tiny_op"] = lambda c, r: Scale(c)


def test_a_builder_that_returns_no_module_is_named(clean_registry):
    enas.register_op("tiny_op", lambda c, r: 3)
    with pytest.raises(ValueError, match="tiny_op.*not a torch.nn.Module"):
        ops.build("tiny_op", 4)


def test_custom_op_example_searches_and_trains(tmp_path, one_thread, clean_registry):
    """A registered op is searched (it owns supernet weights and is sampled) and the derived cell is trained."""
    ex = _example("custom_op")
    result = ex.main(str(tmp_path / "run"), epochs=1)
    run = tmp_path / "run"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    freq = [r["op_freq"] for r in rows if r.get("kind") == "epoch"][-1]
    assert set(freq) == {"sep_conv_3x3", "gelu_conv_3x3", "shift", "identity"}
    assert freq["gelu_conv_3x3"] > 0 and freq["shift"] > 0
    assert result["final"]["test_acc"] is not None and (run / "final" / "model.pt").is_file()
    best = json.loads((run / "best_arch.json").read_text())
    assert {op for cell in ("normal", "reduce") for n in best[cell] for op in n[1::2]} <= set(ex.OPS.split(","))


def test_custom_space_example_runs(tmp_path, one_thread, clean_registry):
    ex = _example("custom_space")
    result = ex.main(str(tmp_path / "run"), epochs=1)
    assert "chain" in spaces.SPACES and result["space"] == "chain"
    best = json.loads((tmp_path / "run" / "best_arch.json").read_text())
    assert best["space"] == "chain" and len(best["layers"]) == 3
    assert result["final"]["params"] > 0 and 0 <= result["test_acc"] <= 1
    # the space is a plain-data protocol: round trips and a well-formed controller program
    mod, space = ex.Chain(), ex.ChainSpace()
    from enas.spaces.base import check_program
    check_program(mod.program(space), mod.decisions(space))
    arch = mod.sample_uniform(space, random.Random(3))
    assert mod.from_dict(mod.to_dict(arch), space) == arch
    assert mod.read_string(mod.to_enas_string(arch, space), space) == arch
    assert spaces.missing_attributes(mod) == []
    from enas.viz import to_svg
    assert "max_pool_3x3" in to_svg({"space": "chain", "format": 1, "layers": ["max_pool_3x3"] * 3}, use_dot=False)


def test_register_space_checks_the_protocol(clean_registry):
    class Half:
        NAME, KIND = "chain", "image"
    with pytest.raises(ValueError, match="lacks from_config, default_space"):
        enas.register_space(Half())
    with pytest.raises(ValueError, match="built-in"):
        enas.register_space(micro)
    assert spaces.missing_attributes(micro) == [] and "chain" not in spaces.SPACES
