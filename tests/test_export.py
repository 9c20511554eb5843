"""Export of trained fixed models: ONNX and TorchScript compute what PyTorch computes; the TorchScript file runs
without enas; the model card's normalisation is the one training used; errors are one line."""

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import enas
from enas import build, config as C, spaces
from enas.archio import read_arch
from enas.export import ExportError, ImageClassifier, LanguageModelStep, cli_export, export_run, load_run
from enas.train import train_fixed

# torch >= 2.10 deprecates torch.jit; the TorchScript format is still what a torch-only consumer loads
pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning"), pytest.mark.usefixtures("one_thread")]

SRC = Path(enas.__file__).resolve().parents[1]  # the directory that makes `import enas` work here
ATOL = 1e-5



def _train(tmp_path_factory, space: str, seed: int) -> Path:
    torch.set_num_threads(1)
    cfg = C.load_config("tiny", space=space)
    arch = spaces.get(space).sample_uniform(build.make_space(cfg), random.Random(seed))
    out = tmp_path_factory.mktemp(f"{space}-train") / "run"
    train_fixed(cfg, arch, out)
    return out


@pytest.fixture(scope="module")
def micro_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory, "micro", 3)


@pytest.fixture(scope="module")
def macro_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory, "macro", 4)


@pytest.fixture(scope="module")
def rnn_run(tmp_path_factory) -> Path:
    return _train(tmp_path_factory, "rnn", 5)


def _eager(run_dir: Path):
    run = load_run(run_dir)
    wrap = ImageClassifier if run["kind"] == "image" else LanguageModelStep
    return wrap(run["model"]).eval(), run


def _image_batch(run_dir: Path, n: int, seed: int) -> torch.Tensor:
    r = json.loads((run_dir / "result.json").read_text())
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, r["in_channels"], r["image_size"], r["image_size"], generator=g)


def _run_isolated(tmp_path: Path, model_file: Path, args: tuple) -> object:
    """Load and run a TorchScript file in `python -I` with the repo's src removed from sys.path."""
    inp, outp = tmp_path / "inputs.pt", tmp_path / "outputs.pt"
    torch.save({"args": list(args)}, inp)
    code = "\n".join([
        "import importlib.util, os, sys",
        "src = os.path.realpath(sys.argv[1])",
        "sys.path[:] = [p for p in sys.path if os.path.realpath(p or '.') != src]",
        "assert importlib.util.find_spec('enas') is None, 'enas is importable'",
        "try:",
        "    import enas",
        "    raise SystemExit('import enas worked')",
        "except ImportError:",
        "    pass",
        "import torch",
        "torch.set_num_threads(1)",
        "m = torch.jit.load(sys.argv[2])",
        "args = torch.load(sys.argv[3], weights_only=True)['args']",
        "with torch.no_grad():",
        "    out = m(*args)",
        "torch.save({'out': list(out) if isinstance(out, tuple) else [out]}, sys.argv[4])",
        "assert not [k for k in sys.modules if k == 'enas' or k.startswith('enas.')]",
        "print('isolated ok')",
    ])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["OMP_NUM_THREADS"] = "1"
    res = subprocess.run([sys.executable, "-I", "-c", code, str(SRC), str(model_file), str(inp), str(outp)],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert res.returncode == 0 and "isolated ok" in res.stdout, res.stdout + res.stderr
    return torch.load(outp, weights_only=True)["out"]


# ------------------------------------------------------------------------------------------- image models
@pytest.mark.parametrize("which", ["micro_run", "macro_run"])
def test_onnx_matches_pytorch(which, request, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    run_dir = request.getfixturevalue(which)
    written = export_run(run_dir, tmp_path / "export", formats=["onnx"])
    assert set(written) == {"onnx"}
    model, _ = _eager(run_dir)
    sess = ort.InferenceSession(str(written["onnx"]), providers=["CPUExecutionProvider"])
    for n in (1, 5, 16):  # the batch axis is dynamic
        x = _image_batch(run_dir, n, seed=n)
        (got,) = sess.run(None, {"image": x.numpy()})
        with torch.no_grad():
            want = model(x)
        assert got.shape == tuple(want.shape)
        assert torch.allclose(torch.from_numpy(got), want, atol=ATOL, rtol=0)


@pytest.mark.parametrize("which", ["micro_run", "macro_run"])
def test_torchscript_runs_without_enas_and_matches(which, request, tmp_path):
    run_dir = request.getfixturevalue(which)
    written = export_run(run_dir, tmp_path / "export", formats=["torchscript"])
    model, _ = _eager(run_dir)
    x = _image_batch(run_dir, 7, seed=1)
    (got,) = _run_isolated(tmp_path, written["torchscript"], (x,))
    with torch.no_grad():
        assert torch.allclose(got, model(x), atol=ATOL, rtol=0)


def test_all_formats_and_the_model_card(micro_run, tmp_path):
    written = export_run(micro_run, tmp_path / "export", formats=["torchscript", "state_dict", "json"])
    assert set(written) == {"torchscript", "state_dict", "arch", "model_card"}
    assert all(p.parent == tmp_path / "export" and p.is_file() for p in written.values())
    assert not list((tmp_path / "export").glob("*.tmp"))
    # state_dict.pt: a plain state dict, the trained weights
    sd = torch.load(written["state_dict"], weights_only=True)
    trained = torch.load(micro_run / "model.pt", weights_only=True)
    assert sd.keys() == trained.keys() and all(torch.equal(sd[k], trained[k]) for k in sd)
    # arch.json reads back as the trained architecture
    cfg = C.from_dict(json.loads((micro_run / "config.json").read_text()))
    arch, _ = read_arch(str(written["arch"]), "micro", build.make_space(cfg))
    assert arch == read_arch(str(micro_run / "arch.json"), "micro", build.make_space(cfg))[0]
    card = json.loads(written["model_card"].read_text())
    result = json.loads((micro_run / "result.json").read_text())
    assert card["task"] == "image_classification" and card["space"] == "micro"
    assert card["inputs"][0]["shape"] == ["batch", 1, 8, 8] and card["outputs"][0]["shape"] == ["batch", 10]
    assert card["num_classes"] == 10 and card["classes"] == [str(i) for i in range(10)]
    assert card["parameters"] == result["params"] and card["test_metric"] == result["test_metric"]
    assert card["files"]["torchscript"] == "model.torchscript.pt" and "onnx" not in card["files"]
    assert len(card["normalization"]["mean"]) == len(card["normalization"]["std"]) == 1


def test_card_normalisation_reproduces_the_test_accuracy(micro_run, tmp_path):
    """Normalising raw test pixels with the card's mean/std and running the exported file gives the accuracy
    that training measured: the card holds the statistics the model was trained with."""
    from enas.data.images import load_images
    written = export_run(micro_run, tmp_path / "export", formats=["torchscript", "json"])
    card = json.loads(written["model_card"].read_text())
    cfg = C.from_dict(json.loads((micro_run / "config.json").read_text()))
    ds = load_images(cfg.data.source, seed=cfg.run.seed)
    mean = torch.tensor(card["normalization"]["mean"]).reshape(1, -1, 1, 1)
    std = torch.tensor(card["normalization"]["std"]).reshape(1, -1, 1, 1)
    x = (ds.test_x.float() / 255.0 - mean) / std
    m = torch.jit.load(str(written["torchscript"]))
    with torch.no_grad():
        acc = (m(x).argmax(-1) == ds.test_y).float().mean().item()
    assert acc == pytest.approx(json.loads((micro_run / "result.json").read_text())["test_acc"], abs=1e-6)


def test_default_out_dir_and_search_run_layout(micro_run, tmp_path):
    search = tmp_path / "search"
    shutil.copytree(micro_run, search / "final")
    shutil.copy(micro_run / "config.json", search / "config.json")
    written = export_run(search, formats=["state_dict", "json"], read_data=False)
    assert written["model_card"].parent == search / "export"
    card = json.loads(written["model_card"].read_text())
    assert card["source_run"] == str(search / "final")
    assert card["normalization"] is None and "normalised" in card["normalization_note"]


def test_unreadable_training_data_is_documented_not_fatal(micro_run, tmp_path, caplog):
    run = tmp_path / "moved"
    shutil.copytree(micro_run, run)
    cfg = json.loads((run / "config.json").read_text())
    cfg["data"]["source"] = str(tmp_path / "gone")
    (run / "config.json").write_text(json.dumps(cfg))
    written = export_run(run, formats=["json"])
    card = json.loads(written["model_card"].read_text())
    assert card["normalization"] is None and "could not be read" in card["normalization_note"]
    assert any("training data not readable" in r.getMessage() for r in caplog.records)


# -------------------------------------------------------------------------------------------- language model
def test_rnn_torchscript_runs_without_enas_and_matches(rnn_run, tmp_path):
    written = export_run(rnn_run, tmp_path / "export", formats=["torchscript", "json"])
    model, run = _eager(rnn_run)
    v, h = run["result"]["vocab_size"], run["cfg"].final_net.hidden_size
    g = torch.Generator().manual_seed(0)
    tokens, hidden = torch.randint(0, v, (9, 3), generator=g), 0.1 * torch.randn(3, h, generator=g)
    logits, new_hidden = _run_isolated(tmp_path, written["torchscript"], (tokens, hidden))
    with torch.no_grad():
        want_logits, want_hidden = model(tokens, hidden)
    assert logits.shape == (9, 3, v)
    assert torch.allclose(logits, want_logits, atol=ATOL, rtol=0)
    assert torch.allclose(new_hidden, want_hidden, atol=ATOL, rtol=0)
    # any sequence length; carrying the hidden state over equals one long sequence
    m = torch.jit.load(str(written["torchscript"]))
    with torch.no_grad():
        a, ha = m(tokens[:4], hidden)
        b, hb = m(tokens[4:], ha)
    assert torch.allclose(torch.cat([a, b]), want_logits, atol=ATOL, rtol=0)
    assert torch.allclose(hb, want_hidden, atol=ATOL, rtol=0)
    card = json.loads(written["model_card"].read_text())
    assert card["task"] == "language_model" and card["vocab_size"] == v and card["hidden_size"] == h
    vocab = json.loads(written["vocab"].read_text())
    assert len(vocab) == v and vocab[:2] == ["<unk>", "<eos>"]


def test_rnn_onnx_matches_pytorch(rnn_run, tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    written = export_run(rnn_run, tmp_path / "export", formats=["onnx"])
    model, run = _eager(rnn_run)
    sess = ort.InferenceSession(str(written["onnx"]), providers=["CPUExecutionProvider"])
    v, h = run["result"]["vocab_size"], run["cfg"].final_net.hidden_size
    for t, b in ((1, 1), (7, 2), (12, 5)):  # time and batch axes are dynamic
        g = torch.Generator().manual_seed(t)
        tokens, hidden = torch.randint(0, v, (t, b), generator=g), 0.1 * torch.randn(b, h, generator=g)
        got_logits, got_hidden = sess.run(None, {"tokens": tokens.numpy(), "hidden": hidden.numpy()})
        with torch.no_grad():
            want_logits, want_hidden = model(tokens, hidden)
        assert torch.allclose(torch.from_numpy(got_logits), want_logits, atol=ATOL, rtol=0)
        assert torch.allclose(torch.from_numpy(got_hidden), want_hidden, atol=ATOL, rtol=0)


# --------------------------------------------------------------------------------------------------- errors
def _one_line_error(fn) -> str:
    with pytest.raises(ExportError) as e:
        fn()
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)
    return str(e.value)


def test_errors_are_one_line(micro_run, tmp_path, monkeypatch):
    assert "no such run directory" in _one_line_error(lambda: export_run(tmp_path / "nope"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "no model.pt" in _one_line_error(lambda: export_run(empty))
    search = tmp_path / "search-no-final"
    search.mkdir()
    (search / "config.json").write_text((micro_run / "config.json").read_text())
    assert "enas train" in _one_line_error(lambda: export_run(search))
    unfinished = tmp_path / "search-unfinished"
    (unfinished / "final").mkdir(parents=True)
    assert "final training has not finished" in _one_line_error(lambda: export_run(unfinished))
    msg = _one_line_error(lambda: export_run(micro_run, tmp_path / "x", formats=["torchscript", "tflite"]))
    assert "'tflite'" in msg and "torchscript, onnx, state_dict, json" in msg
    assert "no export format" in _one_line_error(lambda: export_run(micro_run, tmp_path / "x", formats=[]))
    sd = ["state_dict"]
    broken = tmp_path / "broken"
    shutil.copytree(micro_run, broken)
    (broken / "model.pt").write_bytes(b"not a checkpoint")
    assert "model.pt: cannot load" in _one_line_error(lambda: export_run(broken, tmp_path / "x", formats=sd))
    (broken / "model.pt").unlink()
    torch.save({"stem.0.weight": torch.zeros(1)}, broken / "model.pt")
    assert "model.pt: cannot load" in _one_line_error(lambda: export_run(broken, tmp_path / "x", formats=sd))
    (broken / "result.json").unlink()
    assert "result.json missing" in _one_line_error(lambda: export_run(broken, tmp_path / "x", formats=sd))
    # onnx not installed: a clear hint, and nothing written
    monkeypatch.setitem(sys.modules, "onnx", None)  # makes `import onnx` raise ImportError
    assert "pip install 'enas[export]'" in _one_line_error(lambda: export_run(micro_run, tmp_path / "no-onnx"))
    assert not (tmp_path / "no-onnx").exists()


def test_cli_export(micro_run, tmp_path, capsys):
    assert cli_export(str(micro_run), str(tmp_path / "cli"), ["state_dict,json"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in out] == ["state_dict", "arch", "model_card"]
    assert all(Path(line.split(None, 1)[1]).is_file() for line in out)
    assert cli_export(str(tmp_path / "missing"), None, None) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert cli_export(str(micro_run), str(tmp_path / "cli"), ["pickle"]) == 2
    assert "unknown export format 'pickle'" in capsys.readouterr().err
