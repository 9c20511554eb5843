"""Whole runs through the CLI with the tiny presets: each writes a complete run directory."""

import json

import numpy as np
import pytest
from PIL import Image

from enas.cli import main

RUN_FILES = {"config.json", "metrics.jsonl", "best_arch.json", "derive.json", "result.json", "checkpoint.pt"}


pytestmark = pytest.mark.usefixtures("one_thread")


def _check_search_dir(run, metric):
    assert RUN_FILES <= {p.name for p in run.iterdir()}
    result = json.loads((run / "result.json").read_text())
    assert result["final"][metric] == result[metric if metric != "test_ppl" else "test_metric"]
    assert result["params"] > 0 and result["wall_time_s"] > 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in rows if r["kind"] == "epoch"]
    assert [r["epoch"] for r in epochs] == list(range(len(epochs)))
    assert all("op_freq" in r and abs(sum(r["op_freq"].values()) - 1) < 1e-3 for r in epochs)
    derive = json.loads((run / "derive.json").read_text())
    scores = [r["score"] for r in derive["table"]]
    assert scores == sorted(scores, reverse=True)
    assert json.loads((run / "best_arch.json").read_text()) == derive["table"][0]["arch"]
    assert (run / "final" / "model.pt").exists()
    return result


def test_micro_search_writes_its_run_directory(tmp_path, capsys):
    assert main(["search", "--preset", "tiny", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    result = _check_search_dir(tmp_path / "run", "test_acc")
    assert 0.0 <= result["test_acc"] <= 1.0
    out = capsys.readouterr().out
    assert "normal cell:" in out and "test accuracy:" in out
    assert (tmp_path / "run" / "report.html").exists()
    # the found architecture trains again from its run directory, and shows
    assert main(["train", str(tmp_path / "run"), "--preset", "tiny", "--out", str(tmp_path / "again"),
                 "--quiet"]) == 0
    assert json.loads((tmp_path / "again" / "arch.json").read_text()) == result["best_arch"]
    assert main(["show", str(tmp_path / "run" / "best_arch.json"), "--preset", "tiny"]) == 0
    assert "parameters:" in capsys.readouterr().out


def test_random_controller_search(tmp_path):
    assert main(["search", "--preset", "tiny", "--controller", "random", "--out", str(tmp_path / "r"),
                 "--quiet", "search.retrain=false"]) == 0
    cfg = json.loads((tmp_path / "r" / "config.json").read_text())
    assert cfg["controller"]["kind"] == "random"
    assert json.loads((tmp_path / "r" / "best_arch.json").read_text())["space"] == "micro"


def _image_folder(root, size=20, classes=3, per_class=24):
    rng = np.random.default_rng(0)
    for split, n in (("train", per_class), ("test", per_class // 3)):
        for c in range(classes):
            d = root / split / f"class_{c}"
            d.mkdir(parents=True)
            for i in range(n):
                img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
                img[:, :, c % 3] += np.uint8(120)  # a learnable colour cue per class
                Image.fromarray(img).save(d / f"{i}.png")
    return root


def test_macro_search_on_an_image_folder_of_another_size_and_class_count(tmp_path):
    data = _image_folder(tmp_path / "imgs")
    assert main(["search", "--space", "macro", "--preset", "tiny", "--data", str(data), "--out",
                 str(tmp_path / "run"), "--quiet"]) == 0
    result = _check_search_dir(tmp_path / "run", "test_acc")
    final = result["final"]
    assert final["num_classes"] == 3 and final["image_size"] == 20 and final["in_channels"] == 3


def test_micro_train_on_an_image_folder(tmp_path):
    data = _image_folder(tmp_path / "imgs", size=12, classes=4, per_class=12)
    from enas.spaces import micro
    import random
    arch = micro.to_dict(micro.sample_uniform(micro.MicroSpace(num_nodes=2), random.Random(0)))
    (tmp_path / "a.json").write_text(json.dumps(arch))
    assert main(["train", str(tmp_path / "a.json"), "--preset", "tiny", "--data", str(data), "--out",
                 str(tmp_path / "t"), "--quiet"]) == 0
    result = json.loads((tmp_path / "t" / "result.json").read_text())
    assert result["num_classes"] == 4 and result["image_size"] == 12


def test_rnn_search_on_the_embedded_corpus(tmp_path):
    assert main(["search", "--space", "rnn", "--preset", "tiny", "--out", str(tmp_path / "run"), "--quiet"]) == 0
    result = _check_search_dir(tmp_path / "run", "test_ppl")
    assert result["final"]["test_ppl"] > 1
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all("ppl" in r for r in rows if r["kind"] == "epoch")


def test_short_search_on_the_cifar_png_subset(tmp_path, shared_data_dir):
    data = shared_data_dir / "cifar10-png-subset"
    assert main(["search", "--preset", "tiny", "--data", str(data), "--out", str(tmp_path / "run"), "--quiet",
                 "data.pad=-1", "data.limit_per_class=40"]) == 0
    result = _check_search_dir(tmp_path / "run", "test_acc")
    assert result["final"]["image_size"] == 32 and result["final"]["in_channels"] == 3


@pytest.mark.parametrize("space, preset, module", [("micro", "micro-final", "micro"), ("macro", "macro-final", "macro"),
                                                   ("rnn", "ptb-final", "rnn")])
def test_show_the_published_architectures(space, preset, module, capsys):
    import importlib
    mod = importlib.import_module(f"enas.spaces.{module}")
    assert main(["show", mod.PAPER_ARCH_STRING, "--space", space, "--preset", preset]) == 0
    out = capsys.readouterr().out
    n = int(out.split("parameters: ")[1].split()[0].replace(",", ""))
    expected = {"micro": 3_894_372, "macro": 30_947_424, "rnn": 24_034_544}[space]  # micro: the reference final net
    assert n == expected
