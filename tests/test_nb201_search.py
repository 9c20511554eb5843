"""NAS-Bench-201 network (supernet = fixed model, ``none`` edges), ground truth in searches, controller-only mode."""

import json
import random
import subprocess
import sys

import pytest
import torch

from enas import api, config as C
from enas.benchmarks import nb201 as B
from enas.models.nb201 import NB201Net
from enas.spaces import nb201 as S

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
SPACE = S.NB201Space()


@pytest.fixture
def table():
    try:
        return B.load_table()
    except B.BenchmarkError as e:
        pytest.skip(str(e))


def _pair(arch, channels=6, cells=2, seed=0):
    torch.manual_seed(seed)
    sup = NB201Net(SPACE, channels=channels, cells_per_stage=cells, num_classes=5)
    fixed = NB201Net(SPACE, channels=channels, cells_per_stage=cells, num_classes=5, arch=arch)
    sd = sup.state_dict()
    assert set(fixed.state_dict()) <= set(sd)
    fixed.load_state_dict({k: sd[k] for k in fixed.state_dict()})
    return sup, fixed


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_supernet_equals_fixed_model(seed, mode, one_thread):
    arch = S.sample_uniform(SPACE, random.Random(seed))
    sup, fixed = _pair(arch, seed=seed)
    for m in (sup, fixed):
        m.train(mode == "train")
    x = torch.randn(3, 3, 8, 8, generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(sup(x, arch)[0], fixed(x)[0], rtol=0, atol=0)


def test_fixed_model_holds_only_the_chosen_ops():
    arch = S.from_enas_string(BEST, SPACE)
    _, fixed = _pair(arch)
    ops = {k.split(".")[4] for k in fixed.state_dict() if ".edges." in k}
    assert ops == {"nor_conv_3x3", "nor_conv_1x1"}


def test_none_edges_give_no_gradient(one_thread):
    edges = ["nor_conv_3x3", "none", "nor_conv_1x1", "none", "skip_connect", "nor_conv_3x3"]
    arch = S.NB201Arch(tuple(edges))
    sup, _ = _pair(arch)
    sup(torch.randn(4, 3, 8, 8), arch)[0].sum().backward()
    for name, p in sup.named_parameters():
        if ".edges." not in name:
            assert p.grad is not None, name
            continue
        e, op = int(name.split(".")[3]), name.split(".")[4]
        used = edges[e] == op
        assert (p.grad is not None) == used, name


def test_cell_of_none_outputs_zeros():
    arch = S.NB201Arch(("none",) * 6)
    sup, _ = _pair(arch)
    cell = sup.cells[0]
    x = torch.randn(2, 6, 4, 4)
    assert torch.equal(cell(x, arch), torch.zeros_like(x))


def test_best_cell_has_the_benchmarks_size():
    """The benchmark's C=16, N=5 network of its best CIFAR-10 cell has about 1.07M parameters."""
    m = NB201Net(SPACE, channels=16, cells_per_stage=5, num_classes=10, arch=S.from_enas_string(BEST, SPACE))
    n = sum(p.numel() for p in m.parameters())
    assert 1.0e6 < n < 1.15e6


def test_weight_sharing_search_records_ground_truth(tmp_path, table, one_thread):
    cfg = C.load_config("nb201-tiny")
    result = api.search(cfg, tmp_path / "run")
    gt = result["ground_truth"]
    arch = result["best_arch"]
    assert gt["cifar10"] == pytest.approx(table.accuracy(arch["string"]))
    assert 1 <= gt["cifar10_rank"] <= 15625 and gt["of"] == 15625
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert epochs and all(0 < r["sampled_truth"] < 100 and 0 < r["derive_truth"] < 100 for r in epochs)
    saved = json.loads((tmp_path / "run" / "result.json").read_text())
    assert saved["ground_truth"]["string"] == arch["string"]
    assert "ground truth" in (tmp_path / "run" / "report.html").read_text().lower()


def test_table_search_returns_its_best_by_reward(tmp_path, table):
    cfg = C.load_config("nb201-table", overrides=["search.table_budget=60"])
    result = api.search(cfg, tmp_path / "t")
    rows = [json.loads(line) for line in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["samples"] == 60
    assert result["ground_truth"]["cifar10"] == pytest.approx(max(r["best_truth"] for r in rows), abs=1e-4)
    assert result["ground_truth"]["cifar10"] == pytest.approx(table.accuracy(result["best_arch"]["string"]))
    again = api.search(cfg, tmp_path / "t2")
    assert again["best_arch"] == result["best_arch"]  # same seed, same search


def test_random_table_search_matches_best_of_uniform_samples(tmp_path, table):
    cfg = C.load_config("nb201-table", overrides=["search.table_budget=40", "controller.kind=random"])
    result = api.search(cfg, tmp_path / "r")
    rows = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert abs(rows[-1]["entropy"] - 6 * torch.log(torch.tensor(5.0)).item()) < 1e-4  # uniform policy
    assert result["controller"] == "random" and result["samples"] == 40


def test_table_mode_is_refused_for_a_space_without_a_table():
    with pytest.raises(C.ConfigError, match="ground-truth table"):
        C.load_config("default", overrides=["controller.reward=table"])


def test_show_reads_the_benchmark_string():
    out = subprocess.run([sys.executable, "-m", "enas", "show", BEST, "--space", "nb201"], capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr
    assert "node 3 = skip_connect(node 0) + nor_conv_3x3(node 1) + nor_conv_1x1(node 2)" in out.stdout
    assert "parameters: 1,07" in out.stdout


def test_missing_table_is_one_line_and_nothing_is_created(tmp_path):
    out = subprocess.run([sys.executable, "-m", "enas", "search", "--space", "nb201", "--out", str(tmp_path / "x"),
                          "search.benchmark=" + str(tmp_path / "nowhere")], capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "NAS-Bench-201 table not found" in out.stderr
    assert not (tmp_path / "x").exists()


def test_compare_in_table_mode_judges_by_ground_truth(tmp_path, table):
    cfg = C.load_config("nb201-table", overrides=["search.table_budget=30"])
    summary = api.compare(cfg, [0, 1], tmp_path / "cmp")
    assert summary["metric"] == "ground_truth_cifar10"
    for run in summary["runs"]:
        assert run["final"] == pytest.approx(table.accuracy(run["best_arch"]["string"]))
    assert (tmp_path / "cmp" / "report.html").exists()
    assert not (tmp_path / "cmp" / "enas-seed0" / "report.html").exists()  # a table search writes none (as ever)
