"""Issue #17: a recurrent search without blow-ups, its instruments, the paper mode and the LSTM baseline (fast)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from enas import config as C
from enas.cli import main as cli_main
from enas.models.rnn import RNNModel, count_parameters, lstm_params, matching_lstm
from enas.search import search
from enas.spaces import rnn as R

pytestmark = pytest.mark.usefixtures("one_thread")

SPIKE = 10.0  # the bound: no step above 10x the running median of its loss
CELL3 = R.RNNArch(("relu", "identity", "relu"), (-1, 0, 1))


def epoch_rows(run_dir: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "epoch"]


def tiny_search(tmp_path: Path, name: str, preset: str = "tiny", overrides: tuple[str, ...] = ()) -> list[dict]:
    cfg = C.load_config(preset, space="rnn", overrides=["search.retrain=false", "run.progress=false",
                                                        "run.report=false", *overrides])
    search(cfg, out=tmp_path / name)
    return epoch_rows(tmp_path / name)


def blow_up(model: RNNModel, arch, steps: int = 60) -> float:
    """Largest |h_t| of ``model`` on a long random sequence with its cell weights scaled up (eval mode)."""
    with torch.no_grad():
        for p in model.cell.parameters():
            p.mul_(40.0)
    model.eval()
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.vocab_size, (steps, 4), generator=gen)
    with torch.no_grad():
        _, _, extras = model(tokens, model.init_hidden(4), arch)
    return extras["raw_output"].abs().max().item()


# ------------------------------------------------------------------------------------------- the cell bound
def test_state_clip_bounds_a_relu_identity_cell_that_otherwise_grows():
    space = R.RNNSpace(num_nodes=3)
    torch.manual_seed(0)
    free = RNNModel(space, vocab_size=50, embed_size=8, hidden_size=8, dropout_e=0, dropout_i=0, dropout_x=0,
                    dropout_l=0, dropout_o=0, init_range=0.1)
    torch.manual_seed(0)
    clipped = RNNModel(space, vocab_size=50, embed_size=8, hidden_size=8, dropout_e=0, dropout_i=0, dropout_x=0,
                       dropout_l=0, dropout_o=0, init_range=0.1, state_clip=1.0)
    assert not blow_up(free, CELL3) < 100.0  # unbounded without the clamp (overflows to inf/nan)
    assert blow_up(clipped, CELL3) <= 1.0 + 1e-6


def test_first_tanh_replaces_node_0_only():
    space = R.RNNSpace(num_nodes=3)
    kw = dict(vocab_size=30, embed_size=6, hidden_size=6, dropout_e=0, dropout_i=0, dropout_x=0, dropout_l=0,
              dropout_o=0)
    torch.manual_seed(1)
    a = RNNModel(space, first_tanh=True, **kw).eval()
    b = RNNModel(space, **kw).eval()
    b.load_state_dict(a.state_dict())
    tanh0 = R.RNNArch(("tanh",) + CELL3.activations[1:], CELL3.inputs)
    x = torch.randint(0, 30, (7, 2), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ya, _, _ = a(x, a.init_hidden(2), CELL3)
        yb, _, _ = b(x, b.init_hidden(2), tanh0)
        yc, _, _ = b(x, b.init_hidden(2), CELL3)
    assert torch.allclose(ya, yb)
    assert not torch.allclose(ya, yc)


def test_supernet_equals_fixed_model_with_the_bounds_on():
    space = R.RNNSpace(num_nodes=4)
    kw = dict(vocab_size=40, embed_size=8, hidden_size=8, state_clip=0.5, first_tanh=True, output="all")
    torch.manual_seed(2)
    sup = RNNModel(space, **kw).eval()
    arch = R.RNNArch(("relu", "identity", "tanh", "relu"), (-1, 0, 0, 2))
    fixed = RNNModel(space, arch=arch, **kw).eval()
    sd = sup.state_dict()
    fixed.load_state_dict({k: sd[k] for k in fixed.state_dict()})
    x = torch.randint(0, 40, (9, 3), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y1, h1, _ = sup(x, sup.init_hidden(3), arch)
        y2, h2, _ = fixed(x, fixed.init_hidden(3))
    assert torch.allclose(y1, y2) and torch.allclose(h1, h2)
    assert h1.abs().max() <= 0.5


def test_bad_bound_settings_are_refused():
    with pytest.raises(C.ConfigError, match="rnn_state_clip"):
        C.load_config("default", space="rnn", overrides=["net.rnn_state_clip=-1"])
    with pytest.raises(C.ConfigError, match="rnn_output"):
        C.load_config("default", space="rnn", overrides=["net.rnn_output=middle"])
    with pytest.raises(ValueError, match="state_clip"):
        RNNModel(R.RNNSpace(num_nodes=2), vocab_size=10, embed_size=4, hidden_size=4, state_clip=-0.5)


# ------------------------------------------------------------------------------------- the search and its measure
def test_presets_default_departs_from_paper_where_measured():
    d, p = C.load_config("default", space="rnn"), C.load_config("rnn-paper")
    assert d.net.rnn_state_clip > 0 and d.final_net.rnn_state_clip > 0 and p.net.rnn_state_clip == 0
    assert d.controller.eps == 1e-8 and p.controller.eps == 1e-3
    assert d.controller.lr > p.controller.lr
    assert C.load_config("ptb-search").net.rnn_state_clip == 0  # the reference's settings stay the reference's


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_short_search_with_the_bound_has_no_spike_where_the_paper_cell_has_one(tmp_path, seed):
    # the rnn-tiny search (pydoc, batch 64, BPTT 35, lr 5) reaches a step loss 1e3-1e6 times the running median
    # without the clamp (measured: seed 0 1.4e3, seed 1 9.6e5); with it, none above SPIKE
    free = tiny_search(tmp_path, "free", overrides=(f"run.seed={seed}",))
    bound = tiny_search(tmp_path, "bound", overrides=(f"run.seed={seed}", "net.rnn_state_clip=1"))
    assert max(r["max_loss_ratio"] for r in free) > SPIKE  # the measure sees the blow-up
    assert max(r["max_loss_ratio"] for r in bound) < SPIKE
    assert all(r["max_step_loss"] < 2 * math.log(1000) for r in bound)  # vocabulary 1000: ln V is chance
    row = bound[-1]
    for k in ("ctrl_uniform_reward", "ctrl_reward_snr", "ctrl_reward", "max_loss_ratio_step"):
        assert k in row, k
    assert 0 < row["ctrl_uniform_reward"] < 80 and 0 <= row["max_loss_ratio_step"]


def test_paper_mode_still_runs(tmp_path):
    rows = tiny_search(tmp_path, "paper", preset="rnn-paper", overrides=(
        "shared.epochs=1", "space_cfg.num_nodes=3", "net.embed_size=16", "net.hidden_size=16",
        "data.vocab_size=500", "controller.train_steps=2", "search.derive_samples=2",
        "search.epoch_derive_samples=1"))
    assert len(rows) == 1 and rows[0]["max_loss_ratio"] is not None and math.isfinite(rows[0]["loss"])
    cfg = json.loads((tmp_path / "paper" / "config.json").read_text())
    assert cfg["net"]["rnn_state_clip"] == 0 and cfg["controller"]["eps"] == 1e-3


def test_spike_measure_survives_a_resume(tmp_path):
    from enas.rundir import Stopped
    over = ["search.retrain=false", "run.progress=false", "run.report=false", "net.rnn_state_clip=1",
            "shared.epochs=2", "search.checkpoint_every=30", "data.vocab_size=300", "controller.train_steps=1",
            "search.derive_samples=2", "search.epoch_derive_samples=1"]
    cfg = C.load_config("tiny", space="rnn", overrides=over)
    search(cfg, out=tmp_path / "a")
    calls = {"n": 0}

    def stop():
        calls["n"] += 1
        return calls["n"] > 70  # mid-way through epoch 2
    with pytest.raises(Stopped):
        search(cfg, out=tmp_path / "b", stop=stop)
    search(cfg, resume=tmp_path / "b")
    keys = ("max_loss_ratio", "max_loss_ratio_step", "max_step_loss", "loss")
    a, b = epoch_rows(tmp_path / "a"), epoch_rows(tmp_path / "b")
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]


def ptb_head(tmp_path: Path, shared: Path, lines: int) -> Path:
    src = shared / "ptb"
    if not (src / "ptb.train.txt").is_file():
        pytest.skip(f"PTB not found at {src} (set ENAS_SHARED_DATA to the shared data directory)")
    out = tmp_path / "ptb-head"
    out.mkdir()
    for split, n in (("train", lines), ("valid", lines // 4), ("test", lines // 4)):
        with open(src / f"ptb.{split}.txt") as f:
            (out / f"ptb.{split}.txt").write_text("".join(next(f) for _ in range(n)))
    return out


def test_short_ptb_search_with_the_new_defaults_has_no_spike(tmp_path, shared_data_dir):
    data = ptb_head(tmp_path, shared_data_dir, 600)
    rows = tiny_search(tmp_path, "ptb", preset="default", overrides=(
        f"data.source={data}", "shared.epochs=2", "shared.batch_size=32", "data.bptt=35", "space_cfg.num_nodes=4",
        "net.embed_size=32", "net.hidden_size=32", "data.vocab_size=2000", "controller.train_steps=3",
        "search.derive_samples=2", "search.epoch_derive_samples=1"))
    assert max(r["max_loss_ratio"] for r in rows) < SPIKE
    assert rows[-1]["loss"] < rows[0]["loss"] + 0.5


# ------------------------------------------------------------------------------------------- the LSTM baseline
@pytest.mark.parametrize("nodes,size,vocab", [(3, 16, 1000), (8, 64, 10000), (8, 128, 10000), (12, 200, 10000)])
def test_matching_lstm_has_the_cells_parameter_count(nodes, size, vocab):
    cell = RNNModel(R.RNNSpace(num_nodes=nodes), vocab_size=vocab, embed_size=size, hidden_size=size,
                    arch=R.sample_uniform(R.RNNSpace(num_nodes=nodes), __import__("random").Random(0)))
    target = count_parameters(cell)
    lstm = matching_lstm(target, vocab, C.NetConfig())
    n = count_parameters(lstm)
    assert n == lstm_params(vocab, lstm.embed_size)
    assert abs(n - target) / target < 0.01
    # and it is the closest such LSTM
    assert all(abs(lstm_params(vocab, s) - target) >= abs(n - target) for s in (lstm.embed_size - 1, lstm.embed_size + 1))


def test_enas_train_baseline_lstm_end_to_end(tmp_path, capsys):
    out = tmp_path / "lstm"
    args = ["train", "--preset", "tiny", "--space", "rnn", "0 0 0 1 1", "--baseline", "lstm", "--out", str(out),
            "--quiet", "data.vocab_size=300"]
    assert cli_main(args) == 0
    printed = capsys.readouterr().out
    assert "baseline: tied LSTM" in printed
    res = json.loads((out / "result.json").read_text())
    assert res["baseline"] == "lstm" and abs(res["params"] - res["cell_params"]) / res["cell_params"] < 0.02
    assert math.isfinite(res["test_ppl"]) and (out / "baseline.json").is_file()
    sd = torch.load(out / "model.pt", weights_only=True)
    assert any(k.startswith("rnns.0.") for k in sd) and not any(k.startswith("cell.") for k in sd)
    # a resume continues the same (finished) run; a resume that names another model is refused
    assert cli_main(["train", "--resume", str(out), "--quiet"]) == 0
    capsys.readouterr()


def test_baseline_outside_the_recurrent_space_is_one_line_exit_2(tmp_path, capsys):
    code = cli_main(["train", "--preset", "tiny", "0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0", "--baseline", "lstm",
                     "--out", str(tmp_path / "x"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--baseline" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_trainability_bench_refuses_bad_input_in_one_line(tmp_path, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location("rnn_trainability", Path(__file__).parents[1] / "bench" /
                                                  "rnn_trainability.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--data", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rnn_trainability:") and len(err.splitlines()) == 1
    assert mod.main(["--data", "pydoc", "--steps", "3"]) == 2
