"""NAS-Bench-201 space as data (enas.spaces.nb201) and its ground-truth table (enas.benchmarks.nb201)."""

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from enas.benchmarks import nb201 as bench
from enas.spaces import base, nb201
from enas.spaces.base import ArchError

SPACE = nb201.NB201Space()
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"


@pytest.fixture(scope="module")
def table():
    try:
        path = bench.resolve_path()
    except bench.BenchmarkError as e:
        pytest.skip(str(e))  # "NAS-Bench-201 table not found: ... (tried: <paths>)"
    return bench.load_table(path)


# ----------------------------------------------------------------------------------------------- the space

def test_edges_in_benchmark_order():
    assert nb201.EDGES == [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]
    assert [d.name for d in nb201.decisions(SPACE)] == [
        "node1.from0.op", "node2.from0.op", "node2.from1.op", "node3.from0.op", "node3.from1.op", "node3.from2.op"]
    assert nb201.OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
    assert len(nb201.edge_list(5)) == 10 and nb201.edge_list(2) == [(1, 0)]
    assert nb201.nodes_for_edges(6) == 4 and nb201.nodes_for_edges(7) is None


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_program_consumes_decisions(n):
    s = nb201.NB201Space(num_nodes=n)
    prog = nb201.program(s)
    base.check_program(prog, nb201.decisions(s))
    assert len(prog) == n * (n - 1) // 2
    assert all(st.kind == "op" and st.group == "op" and not st.bias and not st.anchor for st in prog)


def test_space_check():
    assert SPACE.check() == []
    assert any("unknown op 'sep_conv_3x3'" in e for e in nb201.NB201Space(ops=("none", "sep_conv_3x3")).check())
    assert any("at least 2 nodes" in e for e in nb201.NB201Space(num_nodes=1).check())
    assert any("unique" in e for e in nb201.NB201Space(ops=("none", "none")).check())


def test_known_string_and_inputs():
    arch = nb201.from_enas_string(BEST, SPACE)
    assert nb201.actions_from_arch(arch, SPACE) == [3, 3, 3, 1, 3, 2]
    assert nb201.inputs(arch, 3) == [(0, "skip_connect"), (1, "nor_conv_3x3"), (2, "nor_conv_1x1")]
    assert arch.inputs(1) == [(0, "nor_conv_3x3")]
    assert nb201.from_enas_string("3 3 3 1 3 2", SPACE) == arch
    assert nb201.from_enas_string("[3, 3, 3, 1, 3, 2]\n", SPACE) == arch
    with pytest.raises(ArchError, match="node: expected an integer in"):
        nb201.inputs(arch, 4)


def test_whitespace_and_edge_order_are_normalised():
    messy = "  | nor_conv_3x3 ~ 0 | + |nor_conv_3x3~1|nor_conv_3x3~0|+|nor_conv_1x1~2|skip_connect~0|nor_conv_3x3~1|\n"
    assert nb201.to_enas_string(nb201.from_enas_string(messy, SPACE), SPACE) == BEST


@pytest.mark.parametrize("seed", range(10))
def test_round_trips(seed):
    arch = nb201.sample_uniform(SPACE, random.Random(seed))
    acts = nb201.actions_from_arch(arch, SPACE)
    assert nb201.arch_from_actions(acts, SPACE) == arch
    assert nb201.from_dict(json.loads(json.dumps(nb201.to_dict(arch))), SPACE) == arch
    assert nb201.from_enas_string(nb201.to_enas_string(arch, SPACE), SPACE) == arch
    assert nb201.from_enas_string(" ".join(map(str, acts)), SPACE) == arch


def test_other_node_counts_round_trip():
    s = nb201.NB201Space(num_nodes=5)
    arch = nb201.sample_uniform(s, random.Random(0))
    assert len(arch.edges) == 10 and arch.num_nodes == 5
    text = nb201.to_enas_string(arch, s)
    assert text.count("+") == 3
    assert nb201.from_enas_string(text, s) == arch
    assert nb201.space_of(arch, SPACE) == s
    assert nb201.infer_space(nb201.to_dict(arch), SPACE) == s
    assert nb201.infer_space(list(range(10)), SPACE) == s
    assert nb201.infer_space(text, SPACE) == s
    assert nb201.infer_space({"string": text}, SPACE) == s
    assert nb201.infer_space([1, 2, 3, 4], SPACE) == SPACE  # no complete cell has 4 edges


def test_sample_uniform_covers_all_ops_on_every_edge():
    rng = random.Random(0)
    seen = [set() for _ in nb201.EDGES]
    for _ in range(300):
        for k, op in enumerate(nb201.sample_uniform(SPACE, rng).edges):
            seen[k].add(op)
    assert all(s == set(nb201.OPS) for s in seen)


def test_sample_uniform_respects_a_smaller_vocabulary():
    s = nb201.NB201Space(ops=("skip_connect", "nor_conv_3x3"))
    rng = random.Random(1)
    archs = [nb201.sample_uniform(s, rng) for _ in range(50)]
    assert {op for a in archs for op in a.edges} == {"skip_connect", "nor_conv_3x3"}
    assert nb201.actions_from_arch(archs[0], s) == [s.ops.index(op) for op in archs[0].edges]


def test_validate_reports_every_error():
    bad = nb201.NB201Arch(("none", "conv_9x9", "skip_connect", 3, "none"))
    errors = nb201.validate(bad, SPACE)
    assert any("expected 6 ops for 4 nodes, got 5" in e for e in errors)
    assert any("node2.from0: unknown op 'conv_9x9'" in e for e in errors)
    assert any("node3.from0: op must be a name, got 3" in e for e in errors)
    assert len(errors) == 3
    assert nb201.validate(nb201.from_enas_string(BEST, SPACE), SPACE) == []
    small = nb201.NB201Space(ops=("none", "skip_connect"))
    assert len(nb201.validate(nb201.from_enas_string(BEST, SPACE), small)) == 5  # all but the skip edge


def test_actions_errors():
    with pytest.raises(ArchError, match="expected 6 integers, got 5"):
        nb201.arch_from_actions([0] * 5, SPACE)
    with pytest.raises(ArchError, match=r"node3.from2: op index 5 out of range \[0, 4\]"):
        nb201.arch_from_actions([0, 0, 0, 0, 0, 5], SPACE)


def _valid_dict():
    return nb201.to_dict(nb201.from_enas_string(BEST, SPACE))


def test_dict_form():
    d = _valid_dict()
    assert d == {"space": "nb201", "format": 1, "string": BEST,
                 "edges": ["nor_conv_3x3", "nor_conv_3x3", "nor_conv_3x3", "skip_connect", "nor_conv_3x3",
                           "nor_conv_1x1"]}
    arch = nb201.from_dict(d, SPACE)
    only_edges = {k: v for k, v in d.items() if k != "string"}
    only_string = {k: v for k, v in d.items() if k != "edges"}
    assert nb201.from_dict(only_edges, SPACE) == arch == nb201.from_dict(only_string, SPACE)
    assert nb201.from_dict({**d, "note": "best"}, SPACE) == arch


@pytest.mark.parametrize("mutate, needle", [
    (lambda d: d.update(space="micro"), "space: expected 'nb201'"),
    (lambda d: d.pop("format"), "format: expected 1"),
    (lambda d: d.update(extra=1), "unknown fields: extra"),
    (lambda d: d["edges"].pop(), "edges: expected 6 ops for 4 nodes, got 5"),
    (lambda d: d["edges"].__setitem__(2, "conv_9x9"), "node2.from1: unknown op 'conv_9x9'"),
    (lambda d: d.update(edges="abc"), "edges: expected a list of op names, got str"),
    (lambda d: d.update(string=ALL_SKIP), "disagrees with edges"),
    (lambda d: d.update(string="|x~0|"), "string: cell string: expected 3 node groups"),
    (lambda d: d.update(string=7), "string: expected the benchmark's cell string, got int"),
    (lambda d: (d.pop("edges"), d.pop("string")), "needs 'edges'"),
])
def test_dict_errors_are_named(mutate, needle):
    d = _valid_dict()
    mutate(d)
    with pytest.raises(ArchError) as e:
        nb201.from_dict(d, SPACE)
    assert needle in str(e.value)


def test_dict_errors_all_at_once():
    d = _valid_dict()
    d["space"] = "rnn"
    d["edges"][0] = "bogus"
    d["extra"] = True
    with pytest.raises(ArchError) as e:
        nb201.from_dict(d, SPACE)
    assert len(e.value.errors) == 3
    with pytest.raises(ArchError, match="expected a JSON object"):
        nb201.from_dict([1, 2], SPACE)


@pytest.mark.parametrize("text, needle", [
    ("", "cell string: empty"),
    ("   \n", "cell string: empty"),
    ("|none~0|+|none~0|none~1|", "expected 3 node groups separated by '+' for 4 nodes, got 2"),
    (BEST + "+|none~0|", "got 4"),
    ("|none~0|+|none~0|+|none~0|none~1|none~2|", "node 2: expected 2 edges (one from each of nodes 0..1), got 1"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|none~3|", "node 3: expected 3 edges"),
    ("|none~1|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1: source 1 out of range [0, 0]"),
    ("|none~0|+|none~0|none~0|+|none~0|none~1|none~2|", "node 2: two edges from node 0"),
    ("|none~0|+|none~0|none~1|+|none~0|none~1|none~x|", "node 3: source 'x' of edge 'none~x' is not an integer"),
    ("|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1: unknown op 'conv_9x9'"),
    ("|none|+|none~0|none~1|+|none~0|none~1|none~2|", "node 1: edge 'none' must be 'op~source'"),
    ("|~0|+|none~0|none~1|+|none~0|none~1|none~2|", "must be 'op~source'"),
    ("none~0+|none~0|none~1|+|none~0|none~1|none~2|", "node 1: group 'none~0' must look like '|op~0|...|'"),
    ("||+|none~0|none~1|+|none~0|none~1|none~2|", "node 1: edge '' must be 'op~source'"),
    ("3 3 3 1 3", "expected 6 op indices for 4 nodes, got 5"),
    ("3 3 3 1 3 9", "node3.from2: op index 9 out of range [0, 4]"),
    ("3 3 3 -1 3 2", "node3.from0: op index -1 out of range"),
    ("nor_conv_3x3 skip_connect", "neither a benchmark string"),
])
def test_malformed_strings(text, needle):
    with pytest.raises(ArchError) as e:
        nb201.from_enas_string(text, SPACE)
    assert needle in str(e.value), str(e.value)


def test_string_errors_all_at_once():
    text = "|bogus~0|+|none~0|none~5|+|none~0|none~1|none|"
    with pytest.raises(ArchError) as e:
        nb201.from_enas_string(text, SPACE)
    assert len(e.value.errors) == 3, e.value.errors


def test_describe_and_parameter_free():
    arch = nb201.from_enas_string("0 0 1 0 0 2", SPACE)
    lines = nb201.describe(arch).splitlines()
    assert lines[0] == "node 0 = cell input"
    assert lines[1] == "node 1 = zero  [none from node 0]"
    assert lines[2] == "node 2 = skip_connect(node 1)  [none from node 0]"
    assert lines[3].startswith("node 3 = nor_conv_1x1(node 2)  [none from node 0, node 1]")
    best = nb201.from_enas_string(BEST, SPACE)
    assert "node 2 = nor_conv_3x3(node 0) + nor_conv_3x3(node 1)" in nb201.describe(best)
    assert nb201.parameter_free_share(best) == pytest.approx(1 / 6)
    assert nb201.parameter_free_share(arch) == pytest.approx(5 / 6)
    skip = nb201.from_enas_string(ALL_SKIP, SPACE)
    assert nb201.parameter_free_share(skip) == 1.0 and nb201.is_collapsed(skip)
    assert not nb201.is_collapsed(best)
    assert nb201.is_collapsed(nb201.from_enas_string("4 0 1 4 4 1", SPACE))


def test_registered_space_and_hooks():
    from enas import spaces
    assert "nb201" in spaces.SPACES and spaces.get("nb201") is nb201
    assert nb201.KIND == "image" and not spaces.is_text("nb201")
    assert nb201.from_config(4, 99, ()) == SPACE
    assert nb201.from_config(5, 0, ("none", "nor_conv_3x3")) == nb201.NB201Space(5, ("none", "nor_conv_3x3"))
    assert nb201.candidate_names(SPACE) == nb201.OPS
    assert nb201.read_string(BEST, SPACE) == nb201.from_enas_string(BEST, SPACE)
    assert "5 cells" in nb201.network_words(nb201.read_string(BEST, SPACE), 5)


def test_layer0_modules_import_no_torch():
    code = ("import sys; import enas.spaces.nb201, enas.benchmarks, enas.benchmarks.nb201; "
            "bad=[m for m in sys.modules if m == 'torch' or m.startswith('torch.')]; print(len(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0", out.stderr


# ----------------------------------------------------------------------------------------------- the table

def test_whole_table_parses_and_round_trips(table):
    assert len(table) == bench.NUM_CELLS == 15625 == len(set(table.strings))
    seen_actions = set()
    for s in table.strings:
        arch = nb201.from_enas_string(s, SPACE)
        assert nb201.to_enas_string(arch, SPACE) == s
        acts = nb201.actions_from_arch(arch, SPACE)
        assert nb201.arch_from_actions(acts, SPACE) == arch
        seen_actions.add(tuple(acts))
    assert len(seen_actions) == 5 ** 6  # the table is the whole space
    for s in table.strings[::97]:
        arch = nb201.from_enas_string(s, SPACE)
        assert nb201.from_dict(json.loads(json.dumps(nb201.to_dict(arch))), SPACE) == arch


def test_known_cells(table):
    assert round(table.accuracy(BEST, "cifar10"), 2) == 94.37
    assert table.rank(BEST, "cifar10") == 1
    assert table.best("cifar10")[0] == BEST
    assert round(table.accuracy(ALL_SKIP), 2) == 54.30
    assert table.rank(ALL_SKIP, "cifar10") > 10000
    arch = nb201.from_enas_string(BEST, SPACE)
    assert table.lookup(arch) == table.lookup(BEST) == table.lookup("3 3 3 1 3 2")
    assert table.accuracy("  " + BEST.replace("|+|", "| + |") + " \n") == table.accuracy(BEST)
    assert set(table.lookup(BEST)) == set(bench.DATASETS)
    assert round(bench.lookup(BEST, "cifar10"), 2) == 94.37
    assert table.unique_string(BEST) and table.unique_string(BEST) == table.unique_string(arch)
    assert BEST in table and "|none~0|" not in table


def test_ranks_and_percentiles_agree_with_brute_force(table):
    for d in bench.DATASETS:
        accs = table.accuracies(d)
        assert len(accs) == len(table)
        best_s, best_acc = table.best(d)
        assert best_acc == max(accs) and table.rank(best_s, d) == 1
        for i in range(0, len(accs), 1553):
            s = table.strings[i]
            assert table.rank(s, d) == 1 + sum(a > accs[i] for a in accs)
            assert table.percentile(s, d) == pytest.approx(100 * sum(a < accs[i] for a in accs) / len(accs))
    worst = min(range(len(table)), key=table.accuracies("cifar10").__getitem__)
    assert table.percentile(table.strings[worst], "cifar10") == 0.0
    assert 99.9 < table.percentile(BEST, "cifar10") < 100


def test_ground_truth_summary(table):
    s = bench.ground_truth_summary(nb201.from_enas_string(BEST, SPACE), table)
    assert {"cifar10", "cifar100", "imagenet16", "cifar10_rank", "cifar10_percentile", "of", "string"} <= set(s)
    assert s["best"]["cifar10"] == pytest.approx(table.best("cifar10")[1])
    assert s["string"] == BEST and s["of"] == 15625 and s["cifar10_rank"] == 1
    assert round(s["cifar10"], 2) == 94.37
    json.dumps(s)


def test_table_errors(table):
    with pytest.raises(bench.BenchmarkError, match="unknown dataset 'svhn'"):
        table.accuracy(BEST, "svhn")
    with pytest.raises(bench.BenchmarkError, match="not a cell of the benchmark"):
        table.accuracy("|none~0|")
    with pytest.raises(bench.BenchmarkError, match="not a cell of the benchmark"):
        table.accuracy(nb201.NB201Arch(("none",) * 5))
    five = nb201.sample_uniform(nb201.NB201Space(num_nodes=5), random.Random(0))
    with pytest.raises(bench.BenchmarkError):
        table.accuracy(five)
    assert table.accuracy(BEST, "ImageNet16-120") == table.accuracy(BEST, "imagenet16")


def test_load_table_is_cached(table):
    assert bench.load_table(table.path) is table
    assert bench.load_table(table.path.parent) is table


# ----------------------------------------------------------------------------------------------- finding the file

def test_resolve_path_error_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("ENAS_NB201", raising=False)
    with pytest.raises(bench.BenchmarkError) as e:
        bench.resolve_path(tmp_path / "nowhere")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("NAS-Bench-201 table not found: pass --nb201 PATH or set ENAS_NB201")
    assert str(tmp_path / "nowhere") in msg
    monkeypatch.setenv("ENAS_NB201", str(tmp_path / "a\nb"))
    with pytest.raises(bench.BenchmarkError) as e:
        bench.resolve_path()
    assert "\n" not in str(e.value) and "tried:" in str(e.value)


def test_default_locations_are_tried(tmp_path, monkeypatch):
    monkeypatch.delenv("ENAS_NB201", raising=False)
    monkeypatch.chdir(tmp_path)
    try:
        found = bench.resolve_path()
    except bench.BenchmarkError as e:  # no table anywhere: both defaults named
        assert str(e.value).count("nas-bench-201") == 2
        return
    assert found.name == bench.FILENAME  # found relative to the repository, not to the current directory


def test_env_var_is_honoured(table, tmp_path, monkeypatch):
    d = tmp_path / "copy"
    d.mkdir()
    shutil.copy(table.path, d / bench.FILENAME)
    monkeypatch.setenv("ENAS_NB201", str(d))
    assert bench.resolve_path() == (d / bench.FILENAME).resolve()
    copied = bench.load_table()
    assert copied.path == (d / bench.FILENAME).resolve() and copied is not table
    assert copied.accuracy(BEST) == table.accuracy(BEST)
    monkeypatch.setenv("ENAS_NB201", str(d / bench.FILENAME))
    assert bench.load_table() is copied
    assert bench.resolve_path(table.path) == table.path  # an explicit path beats the variable


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("content, needle", [
    ("", "empty file"),
    ("a,b,c\n1,2,3\n", "missing columns"),
    ("CIFAR10TestAccuracy200Epochs,CIFAR100TestAccuracy200Epochs,ImageNetTestAccuracy200Epochs,"
     "ArchitectureString,UniqueString\n1,2\n", "line 2: expected 5 fields, got 2"),
    ("CIFAR10TestAccuracy200Epochs,CIFAR100TestAccuracy200Epochs,ImageNetTestAccuracy200Epochs,"
     f"ArchitectureString,UniqueString\nx,2,3,{BEST},u\n", "is not a number"),
    ("CIFAR10TestAccuracy200Epochs,CIFAR100TestAccuracy200Epochs,ImageNetTestAccuracy200Epochs,"
     f"ArchitectureString,UniqueString\n101,2,3,{BEST},u\n", "is not a percentage"),
    ("CIFAR10TestAccuracy200Epochs,CIFAR100TestAccuracy200Epochs,ImageNetTestAccuracy200Epochs,"
     "ArchitectureString,UniqueString\n1,2,3,|bad~0|,u\n", "line 2: bad cell string"),
    ("CIFAR10TestAccuracy200Epochs,CIFAR100TestAccuracy200Epochs,ImageNetTestAccuracy200Epochs,"
     f"ArchitectureString,UniqueString\n1,2,3,{BEST},u\n1,2,3,{BEST},u\n", "line 3: cell"),
    ("CIFAR10TestAccuracy200Epochs,CIFAR100TestAccuracy200Epochs,ImageNetTestAccuracy200Epochs,"
     f"ArchitectureString,UniqueString\n1,2,3,{BEST},u\n", "1 cells, expected 15625"),
])
def test_garbled_files(tmp_path, content, needle):
    p = _write(tmp_path / bench.FILENAME, content)
    with pytest.raises(bench.BenchmarkError) as e:
        bench.load_table(p)
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_binary_and_oversized_files(tmp_path, monkeypatch):
    p = tmp_path / bench.FILENAME
    p.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(bench.BenchmarkError, match="cannot read"):
        bench.load_table(p)
    big = tmp_path / "big.csv"
    with open(big, "wb") as f:
        f.truncate(bench.MAX_BYTES + 1)  # sparse: no disk used
    with pytest.raises(bench.BenchmarkError, match="over the 50 MB limit"):
        bench.load_table(big)


def test_small_table_in_memory():
    strings = [BEST, ALL_SKIP, nb201.to_enas_string(nb201.arch_from_actions([0] * 6, SPACE), SPACE)]
    t = bench.Table(strings, ["a", "b", "c"], {"cifar10": [90.0, 50.0, 50.0], "cifar100": [1, 2, 3],
                                              "imagenet16": [3, 2, 1]})
    assert t.rank(ALL_SKIP, "cifar10") == 2 and t.rank(strings[2], "cifar10") == 2  # ties share a rank
    assert t.percentile(ALL_SKIP, "cifar10") == 0.0 and t.percentile(BEST) == pytest.approx(200 / 3)
    assert t.best("cifar100") == (strings[2], 3) and t.best("imagenet16") == (BEST, 3)
    assert t.unique_string(ALL_SKIP) == "b"
    with pytest.raises(bench.BenchmarkError, match="is not in the table"):
        t.accuracy("1 1 1 1 1 2")
