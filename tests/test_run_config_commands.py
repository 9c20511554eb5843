"""Commands that read the run (issue #15 item 3): ``enas train RUN_DIR`` and ``enas show RUN_DIR`` take the space,
its ops, the widths and the classes from the run's own config.json and result.json unless told otherwise."""

from __future__ import annotations

import json
import re

import pytest
import torch

from enas import cli
from enas.data.images import load_images

OPS = "sep_conv_3x3,conv_3x3,max_pool_3x3"  # not the default op list: conv_3x3 is unknown to it


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    """A finished search (no retraining) on a 3-class image folder with its own op set and widths."""
    from PIL import Image
    root = tmp_path_factory.mktemp("runcfg")
    ds = load_images("digits")
    x, y = torch.cat([ds.train_x, ds.test_x]), torch.cat([ds.train_y, ds.test_y])
    for k, name in enumerate(("cat", "dog", "owl")):
        (root / "data" / name).mkdir(parents=True)
        for i in torch.nonzero(y == k).flatten()[:20].tolist():
            Image.fromarray(x[i, 0].numpy(), mode="L").save(root / "data" / name / f"{i:04d}.png")
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = cli.main(["search", "--preset", "tiny", "--data", str(root / "data"), "--out", str(root / "run"),
                         "--quiet", "--epochs", "1", f"space_cfg.ops={OPS}", "search.retrain=false",
                         "final_net.channels=6", "train.batch_size=16", "shared.batch_size=16", "run.report=false"])
    finally:
        torch.set_num_threads(n)
    assert code == 0
    return root / "run"


def _params(text: str) -> int:
    return int(re.search(r"parameters: ([\d,]+)", text).group(1).replace(",", ""))


def test_show_reads_the_run(search_run, capsys):
    capsys.readouterr()
    assert cli.main(["show", str(search_run)]) == 0
    out = capsys.readouterr().out
    assert "3 classes, 1 input channels" in out and "(assumed)" not in out and "6 channels" in out
    assert "conv_3x3" in out or "sep_conv_3x3" in out
    # an override still wins over the run's setting
    assert cli.main(["show", str(search_run), "final_net.channels=8"]) == 0
    wider = capsys.readouterr().out
    assert "8 channels" in wider and _params(wider) > _params(out)


def test_train_run_dir_needs_no_options(search_run, tmp_path, monkeypatch, capsys, one_thread):
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert cli.main(["show", str(search_run)]) == 0
    shown = _params(capsys.readouterr().out)
    assert cli.main(["train", str(search_run), "--quiet"]) == 0
    (run,) = list((tmp_path / "runs").iterdir())
    result = json.loads((run / "result.json").read_text())
    cfg = json.loads((run / "config.json").read_text())
    assert result["num_classes"] == 3 and result["in_channels"] == 1 and result["params"] == shown
    assert cfg["space_cfg"]["ops"] == OPS.split(",") and cfg["final_net"]["channels"] == 6
    assert result["arch"] == json.loads((search_run / "best_arch.json").read_text())
    assert result["environment"]["torch"] == torch.__version__ and result["environment"]["seed"] == 0
    # the trained run reads back the same way
    assert cli.main(["show", str(run)]) == 0
    assert _params(capsys.readouterr().out) == shown


def test_a_preset_replaces_the_run_config(search_run, capsys):
    """--preset (or --config) is the base instead of the run's config: the default op list lacks conv_3x3."""
    best = json.loads((search_run / "best_arch.json").read_text())
    uses_conv = any(op == "conv_3x3" for c in ("normal", "reduce") for n in best[c] for op in n[1::2])
    capsys.readouterr()
    code = cli.main(["show", str(search_run), "--preset", "tiny"])
    out, err = capsys.readouterr()
    if uses_conv:
        assert code == 2 and "conv_3x3" in err and len(err.strip().splitlines()) == 1
    else:  # the preset's widths (final_net.channels=4), the run's recorded classes
        assert code == 0 and "4 channels" in out and "3 classes" in out


def test_runs_record_their_environment(search_run, capsys):
    import platform
    env = json.loads((search_run / "result.json").read_text())["environment"]
    assert env["torch"] == torch.__version__ and env["platform"] == platform.platform()
    assert env["machine"] == platform.machine() and env["seed"] == 0 and env["device"] == "cpu"
    assert env["cuda"] == torch.version.cuda and env["cuda_available"] == torch.cuda.is_available()
    assert "git_commit" in env and "hostname" in env and env["torch_threads"] >= 1
    json.dumps(env)  # plain JSON


def test_doctor_names_torch_and_optional_parts(capsys):
    assert cli.main(["doctor"]) == 0
    out = capsys.readouterr().out
    assert f"torch {torch.__version__}" in out and "CUDA" in out and "threads" in out
    for part in ("graphviz", "tensorboard", "onnxruntime", "ray"):
        assert re.search(rf"^{part}\s+(yes|no)\b", out, re.M), part
