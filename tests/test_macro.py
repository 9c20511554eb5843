"""Macro space (pure data) and macro network (supernet == fixed model, gradient routing, B2/B3 guards)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enas.models import macro as MM
from enas.models.macro import MacroNet, count_parameters
from enas.spaces import base
from enas.spaces import macro as M
from enas.spaces.base import ArchError

SPACE = M.MacroSpace(num_layers=6)  # pools after layers 1 and 3
C, HW = 8, 16


def _arch(space: M.MacroSpace, ops: list[str], bit) -> M.MacroArch:
    return M.MacroArch(tuple(ops), tuple(tuple(bit(l, j) for j in range(l)) for l in range(space.num_layers)))


def _input(n: int = 4, hw: int = HW, c: int = 3, dtype=torch.float64) -> torch.Tensor:
    return torch.randn(n, c, hw, hw, generator=torch.Generator().manual_seed(1), dtype=dtype)


# ----------------------------------------------------------------------------------------------- space


def test_spaces_macro_imports_no_torch():
    code = "import sys, enas.spaces.macro; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": "src"}, cwd=_root())


def _root() -> str:
    import pathlib
    return str(pathlib.Path(__file__).resolve().parents[1])


@pytest.mark.parametrize("n", [1, 2, 4, 12, 24])
def test_program_consumes_decisions(n):
    space = M.MacroSpace(num_layers=n)
    prog, dec = M.program(space), M.decisions(space)
    base.check_program(prog, dec)
    assert len(dec) == n + n * (n - 1) // 2
    skips = [s for s in prog if s.kind == "skips"]
    assert [s.size for s in skips] == list(range(1, n))
    # one anchor for the stem and one per layer; layer l's skips see anchors 0..l (first l = its sources)
    assert sum(1 for s in prog if s.kind == "anchor" or s.anchor) == n + 1


def test_space_check():
    assert M.MacroSpace().check() == []
    errs = M.MacroSpace(num_layers=0, ops=("conv_3x3", "conv_3x3", "bogus")).check()
    assert any("num_layers" in e for e in errs)
    assert any("unknown op 'bogus'" in e for e in errs)
    assert any("unique" in e for e in errs)


def test_actions_round_trip():
    rng = random.Random(0)
    for n in (1, 3, 6, 12):
        space = M.MacroSpace(num_layers=n)
        for _ in range(20):
            arch = M.sample_uniform(space, rng)
            assert M.validate(arch, space) == []
            acts = M.actions_from_arch(arch, space)
            assert [d.size > a >= 0 for d, a in zip(M.decisions(space), acts)] == [True] * len(acts)
            assert M.arch_from_actions(acts, space) == arch


def test_json_and_string_round_trip():
    rng = random.Random(1)
    for _ in range(20):
        arch = M.sample_uniform(SPACE, rng)
        d = json.loads(json.dumps(M.to_dict(arch)))
        assert d["space"] == "macro" and d["format"] == 1 and len(d["layers"]) == 6
        assert M.from_dict(d, SPACE) == arch
        s = M.to_enas_string(arch, SPACE)
        assert len(s.split()) == 6 + 15
        assert M.from_enas_string(s, SPACE) == arch


def test_paper_arch_loads():
    assert M.PAPER_ARCH_STRING is not None
    space = M.MacroSpace(num_layers=24, ops=M.DEFAULT_OPS[:4])
    arch = M.from_enas_string(M.PAPER_ARCH_STRING, space)
    assert len(arch.ops) == 24 and len(base.parse_int_string(M.PAPER_ARCH_STRING)) == 300
    assert arch.ops[:4] == ("conv_3x3", "sep_conv_5x5", "conv_3x3", "conv_5x5")
    assert arch.skips[2] == (1, 0) and arch.skips[9] == (0,) * 9
    assert M.to_enas_string(arch, space) == " ".join(M.PAPER_ARCH_STRING.split())
    # the same indices mean the same ops in the full 6-op space
    assert M.from_enas_string(M.PAPER_ARCH_STRING, M.MacroSpace(num_layers=24)) == arch
    assert 0.3 < M.skip_rate(arch) < 0.4
    text = M.describe(arch)
    assert "layer 23: conv_3x3" in text and text.count("reduce") == 2


def test_skip_rate_and_describe():
    space = M.MacroSpace(num_layers=4)
    off = _arch(space, ["conv_3x3"] * 4, lambda l, j: 0)
    on = _arch(space, ["conv_3x3"] * 4, lambda l, j: 1)
    assert M.skip_rate(off) == 0.0 and M.skip_rate(on) == 1.0
    assert M.skip_rate(M.MacroArch(("conv_3x3",), ((),))) == 0.0
    assert "skips from stem, layer 0, layer 1" in M.describe(on)


def _valid_dict() -> dict:
    return M.to_dict(M.sample_uniform(SPACE, random.Random(2)))


def _errors(d, space=SPACE) -> list[str]:
    with pytest.raises(ArchError) as e:
        M.from_dict(d, space)
    return e.value.errors


def test_validation_errors_named():
    d = _valid_dict()
    d["layers"] = d["layers"][:5]
    assert any("expected 6 layers, got 5" in e for e in _errors(d))

    d = _valid_dict()
    d["layers"][2]["op"] = "conv_9x9"
    assert any("layer2.op: unknown op 'conv_9x9'" in e for e in _errors(d))

    d = _valid_dict()
    d["layers"][3]["skips"] = [0, 1]
    assert any("layer3.skips: expected 3 bits" in e for e in _errors(d))

    d = _valid_dict()
    d["layers"][4]["skips"] = [0, 2, 1, True]
    assert any("layer4.skips: bits must be 0 or 1" in e and "2" in e and "True" in e for e in _errors(d))

    d = _valid_dict()
    d["space"], d["format"] = "micro", 2
    errs = _errors(d)
    assert any("space: expected 'macro'" in e for e in errs) and any("format: expected 1" in e for e in errs)

    d = _valid_dict()
    d["extra"] = 1
    d["layers"][1]["width"] = 3
    errs = _errors(d)
    assert any("unknown fields: extra" in e for e in errs)
    assert any("layer1: unknown fields: width" in e for e in errs)

    d = _valid_dict()
    d["layers"][0] = ["conv_3x3", []]
    d["layers"][1]["op"] = 3
    d["layers"][2]["skips"] = "01"
    errs = _errors(d)
    assert any(e.startswith("layer0: expected an object") for e in errs)
    assert any(e.startswith("layer1.op: expected an op name") for e in errs)
    assert any(e.startswith("layer2.skips: expected a list") for e in errs)

    assert any("layers: expected a list" in e for e in _errors({"space": "macro", "format": 1}))
    assert any("expected a JSON object" in e for e in _errors([1, 2]))


def test_every_error_reported_at_once():
    d = _valid_dict()
    d["format"] = 0
    d["layers"][1]["op"] = "bad"
    d["layers"][5]["skips"] = [0, 0, 0, 0, 5]
    errs = _errors(d)
    assert len(errs) == 3, errs


def test_string_errors():
    with pytest.raises(ArchError, match="expected 21 integers for 6 layers"):
        M.from_enas_string("0 1 0", SPACE)
    with pytest.raises(ArchError, match="expected 300 integers"):
        M.from_enas_string(M.PAPER_ARCH_STRING + " 0", M.MacroSpace(num_layers=24))
    bad = [0] * 21
    bad[0], bad[2] = 7, 3  # op out of range; non-bit in layer 1
    with pytest.raises(ArchError) as e:
        M.from_enas_string(" ".join(map(str, bad)), SPACE)
    assert any("layer0.op: op index 7 out of range" in x for x in e.value.errors)
    assert any("layer1.skips: bits must be 0 or 1" in x for x in e.value.errors)
    with pytest.raises(ArchError, match="not an integer"):
        M.from_enas_string("0 x", SPACE)
    with pytest.raises(ArchError, match="actions: expected 21"):
        M.arch_from_actions([0], SPACE)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=False) | st.text(max_size=4),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=5), c, max_size=4),
    max_leaves=12,
)
_bit = st.sampled_from([0, 1, 1, 0, 2, -1, True, "1", None, 0.0, []])
_layer = st.fixed_dictionaries(
    {"op": st.sampled_from(list(M.DEFAULT_OPS) + ["bad", 1, None])}
    | {"skips": st.one_of(st.lists(_bit, max_size=3), _json)},
    optional={"x": _json},
)
_near_valid = st.fixed_dictionaries(
    {"space": st.sampled_from(["macro", "micro", 1]), "format": st.sampled_from([1, 1, 2, "1", None]),
     "layers": st.one_of(st.lists(_layer, min_size=2, max_size=4), _json)},
    optional={"note": st.text(max_size=3), "other": _json},
)




@st.composite
def _mutated(draw) -> object:
    """A valid 3-layer architecture with zero or one field replaced by arbitrary JSON."""
    d = M.to_dict(M.sample_uniform(M.MacroSpace(num_layers=3), random.Random(draw(st.integers(0, 10**6)))))
    where = draw(st.sampled_from(["none", "none", "space", "format", "layers", "op", "skips", "bit", "extra"]))
    value = draw(_json)
    layer = d["layers"][draw(st.integers(0, 2))]
    if where in ("space", "format", "layers"):
        d[where] = value
    elif where in ("op", "skips"):
        layer[where] = value
    elif where == "bit" and layer["skips"]:
        layer["skips"][0] = value
    elif where == "extra":
        d[draw(st.text(max_size=5))] = value
    return d


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_json, _near_valid, _mutated()))
def test_random_dicts_validate_or_raise_arch_error(d):
    space = M.MacroSpace(num_layers=3)
    try:
        arch = M.from_dict(d, space)
    except ArchError as e:
        assert e.errors and all(isinstance(x, str) for x in e.errors)
        return
    assert M.validate(arch, space) == []
    assert M.from_dict(M.to_dict(arch), space) == arch


# ----------------------------------------------------------------------------------------------- network


def _pair(arch: M.MacroArch, double: bool, space: M.MacroSpace = SPACE, seed: int = 0):
    torch.manual_seed(seed)
    sup = MacroNet(space, channels=C, num_classes=5, arch=None, double_channels=double).double()
    fixed = MacroNet(space, channels=C, num_classes=5, arch=arch, double_channels=double).double()
    sd = sup.state_dict()
    fixed.load_state_dict({k: sd[k] for k in fixed.state_dict()})
    return sup, fixed


@pytest.mark.parametrize("double", [False, True])
def test_supernet_equals_fixed_model(double):
    rng = random.Random(3)
    x = _input()
    archs = [M.sample_uniform(SPACE, rng) for _ in range(4)]
    archs += [_arch(SPACE, list(M.DEFAULT_OPS), lambda l, j: 0), _arch(SPACE, list(M.DEFAULT_OPS), lambda l, j: 1)]
    for arch in archs:
        sup, fixed = _pair(arch, double)
        assert set(n for n, _ in fixed.named_parameters()) <= set(n for n, _ in sup.named_parameters())
        assert set(fixed.state_dict()) <= set(sup.state_dict())
        for train in (True, False):
            sup.train(train)
            fixed.train(train)
            a, aux_a = sup(x, arch)
            b, aux_b = fixed(x)
            assert aux_a is None and aux_b is None
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
        # running statistics moved identically during the train-mode pass
        for k, v in fixed.state_dict().items():
            torch.testing.assert_close(v, sup.state_dict()[k])


def test_fixed_model_is_smaller_and_default_channel_policy():
    arch = M.sample_uniform(SPACE, random.Random(4))
    sup = MacroNet(SPACE, channels=C, num_classes=10)
    fixed_const = MacroNet(SPACE, channels=C, num_classes=10, arch=arch, double_channels=False)
    fixed_double = MacroNet(SPACE, channels=C, num_classes=10, arch=arch)
    assert not sup.double_channels and fixed_double.double_channels
    assert count_parameters(fixed_const) < count_parameters(sup)
    assert fixed_double.classifier.in_features == 4 * C and sup.classifier.in_features == C
    x = _input(dtype=torch.float32)
    assert fixed_double(x)[0].shape == (4, 10)


def _grads(model) -> dict[str, bool]:
    return {n: p.grad is not None and bool(p.grad.abs().sum() > 0) for n, p in model.named_parameters()}


def test_gradient_routing():
    torch.manual_seed(0)
    sup = MacroNet(SPACE, channels=C, num_classes=5).double()
    x = _input()
    rng = random.Random(5)
    ever = {n: False for n, _ in sup.named_parameters()}
    for _ in range(30):
        arch = M.sample_uniform(SPACE, rng)
        sup.zero_grad(set_to_none=True)
        sup(x, arch)[0].pow(2).sum().backward()
        fixed = MacroNet(SPACE, channels=C, num_classes=5, arch=arch, double_channels=False)
        used = set(n for n, _ in fixed.named_parameters())
        for n, got in _grads(sup).items():
            if n in used:
                assert got, f"{n} is in the architecture but got no gradient"
            else:
                p = dict(sup.named_parameters())[n]
                assert p.grad is None, f"{n} is not in the architecture but got a gradient"
            ever[n] |= got
    missing = [n for n, got in ever.items() if not got]
    assert not missing, missing


def test_only_sampled_path_runs():
    sup = MacroNet(SPACE, channels=C, num_classes=5)
    arch = _arch(SPACE, ["max_pool_3x3", "sep_conv_3x3", "conv_5x5", "avg_pool_3x3", "conv_3x3", "sep_conv_5x5"],
                 lambda l, j: int(l == 5 and j == 0))
    ran = []
    for l, layer in enumerate(sup.layers):
        for name, m in layer.ops.items():
            m.register_forward_hook(lambda *_, tag=(l, name): ran.append(tag))
    for p, red in sup.reduce.items():
        for j, m in red.items():
            m.register_forward_hook(lambda *_, tag=(f"reduce{p}", j): ran.append(tag))
    sup(_input(dtype=torch.float32), arch)
    expected = [(l, op) for l, op in enumerate(arch.ops)]
    # after layer 1: node 2 (next input) and node 0 (layer 5 skips from the stem); after layer 3: nodes 4 and 0
    expected += [("reduce1", "0"), ("reduce1", "2"), ("reduce3", "0"), ("reduce3", "4")]
    assert sorted(ran, key=str) == sorted(expected, key=str)


@pytest.mark.parametrize("bit", [0, 1])
@pytest.mark.parametrize("double", [False, True])
def test_all_skips_off_and_on(bit, double):
    arch = _arch(SPACE, ["conv_3x3", "sep_conv_3x3", "conv_5x5", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3"],
                 lambda l, j: bit)
    sup, fixed = _pair(arch, double)
    x = _input()
    for model in (sup, fixed):
        out, _ = model(x, arch)
        assert out.shape == (4, 5) and torch.isfinite(out).all()
        out.sum().backward()
    n_blocks = sum(len(layer.combine.blocks) for layer in fixed.layers[1:])
    assert n_blocks == 5 + bit * 15


def test_changing_an_op_changes_the_output():
    """Guard against bug B2 (every op choice silently running the same branch)."""
    torch.manual_seed(0)
    sup = MacroNet(SPACE, channels=C, num_classes=5).double().eval()
    x = _input()
    base_arch = M.sample_uniform(SPACE, random.Random(6))
    for layer in (0, 3, 5):
        outs = []
        for op in SPACE.ops:
            ops = list(base_arch.ops)
            ops[layer] = op
            outs.append(sup(x, M.MacroArch(tuple(ops), base_arch.skips))[0])
        for i in range(len(outs)):
            for k in range(i + 1, len(outs)):
                assert not torch.allclose(outs[i], outs[k]), (layer, SPACE.ops[i], SPACE.ops[k])


def test_fixed_sep_conv_is_depthwise(monkeypatch):
    """Guard against bug B3 (separable ops built as regular convolutions in the fixed model)."""
    arch = _arch(SPACE, ["sep_conv_3x3", "conv_3x3", "sep_conv_5x5", "conv_5x5", "conv_3x3", "conv_3x3"],
                 lambda l, j: 0)
    fixed = MacroNet(SPACE, channels=C, num_classes=5, arch=arch, double_channels=False)
    calls = []
    real = torch.nn.functional.conv2d

    def spy(x, w, *args, **kwargs):
        calls.append((tuple(w.shape), kwargs.get("groups", args[4] if len(args) > 4 else 1)))
        return real(x, w, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "conv2d", spy)
    fixed(_input(dtype=torch.float32))
    assert ((C, 1, 3, 3), C) in calls and ((C, 1, 5, 5), C) in calls
    assert ((C, C, 3, 3), 1) in calls and ((C, C, 5, 5), 1) in calls
    sep = fixed.layers[0].ops["sep_conv_3x3"]
    conv = fixed.layers[1].ops["conv_3x3"]
    assert count_parameters(sep) < count_parameters(conv)


def test_errors_and_shapes():
    sup = MacroNet(SPACE, channels=C, num_classes=5)
    x = _input(dtype=torch.float32)
    with pytest.raises(ValueError, match="supernet"):
        sup(x)
    arch = M.sample_uniform(SPACE, random.Random(7))
    other = M.sample_uniform(SPACE, random.Random(8))
    fixed = MacroNet(SPACE, channels=C, num_classes=5, arch=arch)
    assert fixed(x, arch)[0].shape == (4, 5)
    with pytest.raises(ValueError, match="its own architecture"):
        fixed(x, other)
    bad = M.MacroArch(arch.ops[:-1], arch.skips[:-1])
    with pytest.raises(ArchError, match="expected 6 layers"):
        MacroNet(SPACE, channels=C, num_classes=5, arch=bad)
    with pytest.raises(ArchError, match="expected 6 layers"):
        sup(x, bad)
    # any input size >= 8x8, any class count and input channels; drop_path_prob is accepted and ignored
    for hw, cin, k in ((8, 1, 2), (13, 4, 7)):
        for model in (MacroNet(SPACE, channels=C, num_classes=k, in_channels=cin, keep_prob=0.5),
                      MacroNet(SPACE, channels=C, num_classes=k, in_channels=cin, arch=arch)):
            out, aux = model(_input(2, hw, cin, torch.float32), arch, drop_path_prob=0.3)
            assert out.shape == (2, k) and aux is None


def test_reduced_nodes():
    space = M.MacroSpace(num_layers=6)
    assert MM.reduced_nodes(None, 6) == {1: [0, 1, 2], 3: [0, 1, 2, 3, 4]}
    arch = _arch(space, ["conv_3x3"] * 6, lambda l, j: int((l, j) == (3, 1)))
    # layer 3 reads node 1 after the first pool only
    assert MM.reduced_nodes(arch, 6) == {1: [1, 2], 3: [4]}


def test_paper_arch_parameter_count():
    space = M.MacroSpace(num_layers=24, ops=M.DEFAULT_OPS[:4])
    arch = M.from_enas_string(M.PAPER_ARCH_STRING, space)
    with torch.device("meta"):
        model = MacroNet(space, channels=96, num_classes=10, arch=arch, double_channels=True)
    assert count_parameters(model) == 30_947_424
