"""DARTS genotype <-> micro architecture JSON: the published DARTS_V2 cell, round trips, and every error named."""

import logging
import random
import subprocess
import sys

import pytest

from enas import genotype as G
from enas.spaces import micro
from enas.spaces.base import ArchError

# quark0/darts cnn/genotypes.py, verbatim (DARTS = DARTS_V2)
DARTS_V2_SOURCE = """DARTS_V2 = Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0),
('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)],
normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2),
('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)],
reduce_concat=[2, 3, 4, 5])"""

NASNET_NORMAL_ONLY = ("Genotype(normal=[('sep_conv_5x5', 1), ('sep_conv_3x3', 0), ('sep_conv_5x5', 0), "
                      "('sep_conv_3x3', 0), ('avg_pool_3x3', 1), ('skip_connect', 0), ('avg_pool_3x3', 0), "
                      "('avg_pool_3x3', 0), ('sep_conv_3x3', 1), ('skip_connect', 1)], normal_concat=range(2, 7), "
                      "reduce=[('sep_conv_5x5', 1), ('sep_conv_7x7', 0), ('max_pool_3x3', 1), ('sep_conv_7x7', 0), "
                      "('avg_pool_3x3', 1), ('sep_conv_5x5', 0), ('skip_connect', 3), ('avg_pool_3x3', 2), "
                      "('sep_conv_3x3', 2), ('max_pool_3x3', 1)], reduce_concat=[4, 5, 6])")

DARTS_V2_SPACE = micro.MicroSpace(num_nodes=4, ops=micro.DEFAULT_OPS + ("dil_conv_3x3",))


def test_darts_v2_converts_to_a_valid_micro_arch(caplog):
    with caplog.at_level(logging.WARNING, logger="enas"):
        d = G.from_darts(DARTS_V2_SOURCE)
    arch = micro.from_dict(d, DARTS_V2_SPACE)  # valid in a 4-node space with dil_conv
    assert micro.validate(arch, DARTS_V2_SPACE) == []
    assert d["normal"] == [[0, "sep_conv_3x3", 1, "sep_conv_3x3"], [0, "sep_conv_3x3", 1, "sep_conv_3x3"],
                           [1, "sep_conv_3x3", 0, "identity"], [0, "identity", 2, "dil_conv_3x3"]]
    assert d["reduce"] == [[0, "max_pool_3x3", 1, "max_pool_3x3"], [2, "identity", 1, "max_pool_3x3"],
                           [0, "max_pool_3x3", 2, "identity"], [2, "identity", 1, "max_pool_3x3"]]
    assert G.space_for(d) == DARTS_V2_SPACE
    # DARTS concatenates nodes 2..5, our cell outputs its loose ends (3, 4, 5): both cells warn
    warned = [r.getMessage() for r in caplog.records if "concat" in r.getMessage()]
    assert len(warned) == 2 and all("loose ends [3, 4, 5]" in m for m in warned)


def test_darts_v2_round_trip():
    d = G.from_darts(DARTS_V2_SOURCE)
    text = G.to_darts(d)
    assert G.from_darts(text) == d
    back, orig = G.parse_darts(text), G.parse_darts(DARTS_V2_SOURCE)
    assert back["normal"] == orig["normal"] and back["reduce"] == orig["reduce"]  # every edge, in order
    assert back["normal_concat"] == [3, 4, 5] == back["reduce_concat"]  # our loose ends
    assert G.to_darts(micro.from_dict(d, DARTS_V2_SPACE)) == text  # a MicroArch is accepted too
    assert G.from_darts(G.DARTS_V2) == d


def test_darts_v2_builds_and_runs_as_a_fixed_network():
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from enas.models.micro import MicroNet
    arch = micro.from_dict(G.from_darts(G.DARTS_V2), DARTS_V2_SPACE)
    net = MicroNet(DARTS_V2_SPACE, channels=4, num_layers=1, num_classes=10, in_channels=3, arch=arch, aux=False)
    logits, _ = net.eval()(torch.randn(2, 3, 8, 8))
    assert logits.shape == (2, 10) and bool(torch.isfinite(logits).all())


@pytest.mark.parametrize("num_nodes", [1, 2, 4, 6])
def test_random_round_trips_over_every_known_op(num_nodes, caplog):
    space = micro.MicroSpace(num_nodes=num_nodes, ops=micro.KNOWN_OPS)
    rng = random.Random(num_nodes)
    for _ in range(30):
        d = micro.to_dict(micro.sample_uniform(space, rng))
        with caplog.at_level(logging.WARNING, logger="enas"):
            back = G.from_darts(G.to_darts(d))
        assert back == d
        assert micro.from_dict(back, G.space_for(back)) == micro.from_dict(d, space)
    assert not caplog.records  # concat written as the loose ends: nothing to warn about


def test_op_names_map_both_ways_and_exist_in_the_op_table():
    torch = pytest.importorskip("torch")  # noqa: F841 - enas.ops needs torch
    from enas.ops import OPS
    for op in micro.KNOWN_OPS:
        assert op in OPS
        assert G.op_from_darts(G.op_to_darts(op)) == op
    assert G.op_to_darts("identity") == "skip_connect"
    for op in ("sep_conv_3x3", "sep_conv_5x5", "avg_pool_3x3", "max_pool_3x3", "dil_conv_3x3", "dil_conv_5x5"):
        assert G.op_to_darts(op) == op


def test_nasnet_cells_with_range_concat_and_7x7():
    d = G.from_darts(NASNET_NORMAL_ONLY)
    assert len(d["normal"]) == len(d["reduce"]) == 5
    assert d["reduce"][0] == [1, "sep_conv_5x5", 0, "sep_conv_7x7"]
    assert micro.loose_ends(micro.from_dict(d, G.space_for(d)).normal) == [2, 3, 4, 5, 6]  # = normal_concat


def test_accepted_spellings():
    d = G.from_darts(G.DARTS_V2)
    parts = G.parse_darts(G.DARTS_V2)
    positional = (f"genotypes.Genotype({parts['normal']!r}, range(2, 6), {parts['reduce']!r}, "
                  "reduce_concat=range(2, 6))")
    assert G.from_darts(positional) == d
    assert G.from_darts("  DARTS = " + G.DARTS_V2 + "\n") == d
    assert G.parse_darts(positional)["normal_concat"] == [2, 3, 4, 5]
    no_concat = f"Genotype(normal={parts['normal']!r}, reduce={parts['reduce']!r})"
    assert G.from_darts(no_concat) == d


@pytest.mark.parametrize("bad_op, named", [("none", "'none'"), ("conv_7x1_1x7", "'conv_7x1_1x7'"),
                                           ("sep_conv_9x9", "'sep_conv_9x9'")])
def test_unmappable_ops_are_named(bad_op, named):
    text = G.DARTS_V2.replace("('dil_conv_3x3', 2)", f"('{bad_op}', 2)")
    with pytest.raises(ArchError) as e:
        G.from_darts(text)
    assert named in str(e.value) and "normal.node5" in str(e.value)


def test_every_unmappable_op_is_reported_at_once():
    text = G.DARTS_V2.replace("('dil_conv_3x3', 2)", "('none', 2)").replace("('max_pool_3x3', 0)", "('foo', 0)")
    with pytest.raises(ArchError) as e:
        G.from_darts(text)
    msg = str(e.value)
    assert "'none'" in msg and "'foo'" in msg and len(e.value.errors) >= 3


@pytest.mark.parametrize("text, words", [
    ("", "empty"),
    ("Genotype(normal=[('sep_conv_3x3', 0)", "syntax"),
    ("Foo(normal=[], reduce=[])", "expected Genotype"),
    ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)])", "missing field 'reduce'"),
    ("Genotype(normal=[('sep_conv_3x3', 0)], reduce=[('sep_conv_3x3', 0)])", "two per node"),
    ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], reduce=[('sep_conv_3x3', 0), "
     "('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1)])", "same number"),
    ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 2)], reduce=[('sep_conv_3x3', 0), "
     "('sep_conv_3x3', 1)])", "normal.node2.y: input must be"),
    ("Genotype(normal=[('sep_conv_3x3', '0'), ('sep_conv_3x3', 1)], reduce=[])", "expected (op_name, input)"),
    ("Genotype(normal=[], reduce=[], shape=3)", "unknown field 'shape'"),
    ("Genotype(normal=[], reduce=[])", "no nodes"),
    ("Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)], normal_concat=range(x), "
     "reduce=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1)])", "range() needs"),
])
def test_malformed_text(text, words):
    with pytest.raises(ArchError) as e:
        G.from_darts(text)
    assert words in str(e.value)


def test_text_is_never_evaluated(tmp_path):
    marker = tmp_path / "pwned"
    payload = f"__import__('pathlib').Path({str(marker)!r}).touch()"
    for text in (f"Genotype(normal={payload}, reduce=[])",
                 f"Genotype(normal=[], reduce=[], normal_concat={payload})",
                 f"({payload})",
                 f"Genotype(normal=[(str({payload}), 0), ('sep_conv_3x3', 1)], reduce=[])"):
        with pytest.raises(ArchError):
            G.from_darts(text)
    assert not marker.exists()


def test_to_darts_rejects_invalid_architectures():
    good = G.from_darts(G.DARTS_V2)
    bad = {**good, "normal": [[0, "sep_conv_3x3", 7, "sep_conv_3x3"]] + good["normal"][1:]}
    with pytest.raises(ArchError, match=r"normal.node2.y: input must be"):
        G.to_darts(bad)
    with pytest.raises(ArchError, match="unknown op 'warp_drive'"):
        G.to_darts({**good, "reduce": [[0, "warp_drive", 1, "identity"]] + good["reduce"][1:]})
    with pytest.raises(ArchError, match="not a micro-space op"):
        G.op_to_darts("none")


def test_genotype_module_does_not_import_torch():
    code = ("import sys, enas.genotype; "
            "print(sum(1 for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0", out.stderr
