"""Data from Python (issue #15 item 2): a pair of tensors and a map-style Dataset passed to ``api.search`` /
``api.train`` give the run that the same images in an image folder give; resume needs the same data again."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from enas import api, cli, config as C
from enas.data.images import DataError, load_images, memory_source, release_source

from conftest import drop_clock

CLASSES = ("a", "b", "c")


@pytest.fixture(scope="module")
def images():
    """72 digits of three classes, grouped by class (the order an image folder is read in)."""
    ds = load_images("digits")
    x, y = torch.cat([ds.train_x, ds.test_x]), torch.cat([ds.train_y, ds.test_y])
    keep = torch.cat([torch.nonzero(y == k).flatten()[:24] for k in range(3)])
    return x[keep], y[keep]


def _folder(root, x, y):
    from PIL import Image
    for i, (img, label) in enumerate(zip(x, y)):
        d = root / CLASSES[int(label)]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0].numpy(), mode="L").save(d / f"{i:04d}.png")
    return root


class Floats(torch.utils.data.Dataset):
    """Items as a torchvision dataset with ToTensor gives them: float (C, H, W) in [0, 1] and an int label."""

    def __init__(self, x, y):
        self.x, self.y = x.float() / 255, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], int(self.y[i])


def _cfg(**extra):
    over = ["shared.epochs=1", "shared.batch_size=16", "train.batch_size=16", "train.epochs=1", "run.report=false",
            "controller.reward_batch_size=16", "search.derive_samples=3"]
    return C.load_config("tiny", overrides=over + [f"{k}={v}" for k, v in extra.items()])


def _same_run(a, b):
    ra, rb = (json.loads((p / "result.json").read_text()) for p in (a, b))
    for r in (ra, rb):
        r["final"].pop("dataset")
    assert drop_clock(ra) == drop_clock(rb)
    ma, mb = ((p / "metrics.jsonl").read_text().splitlines() for p in (a, b))
    assert drop_clock([json.loads(m) for m in ma]) == drop_clock([json.loads(m) for m in mb])


def test_tensors_and_dataset_search_like_an_image_folder(images, tmp_path, one_thread):
    x, y = images
    folder = _folder(tmp_path / "digits3", x, y)
    api.search(_cfg(**{"data.source": str(folder)}), out=tmp_path / "folder")
    api.search(_cfg(), out=tmp_path / "tensors", data=(x, y), classes=CLASSES)
    api.search(_cfg(), out=tmp_path / "dataset", data=Floats(x, y), classes=CLASSES)
    _same_run(tmp_path / "folder", tmp_path / "tensors")
    _same_run(tmp_path / "folder", tmp_path / "dataset")
    result = json.loads((tmp_path / "tensors" / "result.json").read_text())
    assert result["final"]["num_classes"] == 3 and result["final"]["in_channels"] == 1
    saved = json.loads((tmp_path / "tensors" / "config.json").read_text())["data"]["source"]
    assert saved.startswith("python:tensors:")
    # the same images as a tensor pair and as a Dataset are the same data (one digest, another name)
    assert saved.rsplit(":", 1)[1] == json.loads((tmp_path / "dataset" / "config.json").read_text())[
        "data"]["source"].rsplit(":", 1)[1]

    # resume: the command line cannot reload a Python object (one line, exit 2) ...
    code = cli.main(["search", "--resume", str(tmp_path / "tensors")])
    assert code == 2
    # ... and from Python only the run's own data is accepted
    with pytest.raises(DataError, match="was made with data.source"):
        api.search(_cfg(), resume=tmp_path / "tensors", data=(x[:60], y[:60]), classes=CLASSES)
    again = api.search(_cfg(), resume=tmp_path / "tensors", data=(x, y), classes=CLASSES)
    assert again["test_acc"] == result["test_acc"]


def test_resume_without_the_data_is_one_line(images, tmp_path, capsys, one_thread):
    x, y = images
    api.search(_cfg(**{"search.retrain": "false"}), out=tmp_path / "run", data=(x, y), classes=CLASSES)
    capsys.readouterr()
    assert cli.main(["search", "--resume", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "passed from Python" in err[0] and "Traceback" not in err[0]


def test_train_from_a_dataset_like_from_tensors(images, tmp_path, one_thread):
    x, y = images
    cfg = _cfg()
    arch = api.load_arch("0 1 0 2 1 0 2 3 0 0 1 4 1 1 2 0", cfg)
    a = api.train(cfg, arch, tmp_path / "t", data=(x, y), classes=CLASSES)
    b = api.train(cfg, arch, tmp_path / "d", data=Floats(x, y), classes=CLASSES)
    assert a["test_acc"] == b["test_acc"] and a["num_classes"] == 3
    # a given test set is used as it is
    c = api.train(cfg, arch, tmp_path / "split", data=(x[::2], y[::2]), test_data=(x[1::2], y[1::2]))
    assert c["num_classes"] == 3 and c["dataset"] == "tensors"


@pytest.mark.parametrize("data, match", [
    ((torch.rand(10, 1, 8, 8) * 2, torch.zeros(10, dtype=torch.long)), r"\[0, 1\]"),
    ((torch.zeros(10, 8, 8, 3, dtype=torch.uint8), torch.zeros(10, dtype=torch.long)), "channels-last"),
    ((torch.zeros(10, 1, 8, 8, dtype=torch.uint8), torch.zeros(9, dtype=torch.long)), "labels of shape"),
    ((torch.zeros(10, 1, 8, 8, dtype=torch.uint8), -torch.ones(10, dtype=torch.long)), ">= 0"),
    ([(torch.zeros(1, 8, 8), 0), (torch.zeros(1, 6, 6), 1)], "one size"),
    ([(torch.zeros(1, 8, 8), "x"), (torch.zeros(1, 8, 8), 1)], "integer"),
    ("not data", "expected a pair"),
    ((torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.zeros(4, dtype=torch.long)), "at least 2 classes"),
])
def test_bad_python_data_is_one_data_error(data, match):
    with pytest.raises(DataError, match=match):
        memory_source(data)


def test_memory_source_formats_and_release():
    x = np.arange(4 * 8 * 8, dtype=np.uint8).reshape(4, 8, 8)  # (N, H, W) numpy, gray
    src = memory_source((x, np.array([0, 1, 0, 1])), (x, np.array([1, 0, 1, 0])), name="mine")
    ds = load_images(src)
    assert src.startswith("python:mine:") and ds.train_x.shape == (4, 1, 8, 8) and ds.classes == ("0", "1")
    items = [{"image": torch.zeros(8, 8, dtype=torch.uint8), "label": k % 2} for k in range(6)]
    assert load_images(memory_source(items)).num_classes == 2
    release_source(src)
    with pytest.raises(DataError, match="passed from Python"):
        load_images(src)


def test_fixed_model_in_ones_own_loop(images, tmp_path, one_thread):
    """``api.load_model`` / ``api.fixed_model``: logits alone outside training, (logits, aux) while training."""
    x, y = images
    cfg = _cfg()
    arch = api.load_arch("0 1 0 2 1 0 2 3 0 0 1 4 1 1 2 0", cfg)
    api.train(cfg, arch, tmp_path / "t", data=(x, y), classes=CLASSES)
    model = api.load_model(tmp_path / "t")
    inputs = x[:8].float() / 255
    assert not model.training and model(inputs).shape == (8, 3)
    assert torch.equal(model(inputs), model.net(inputs)[0])
    own = api.fixed_model(cfg, arch, num_classes=3, in_channels=1)  # final_net.aux_weight > 0: an aux head
    opt = torch.optim.SGD(own.parameters(), lr=0.1)
    own.train()
    logits, aux = own(inputs)
    loss = torch.nn.functional.cross_entropy(logits, y[:8]) + 0.4 * torch.nn.functional.cross_entropy(aux, y[:8])
    loss.backward()
    opt.step()
    own.eval()
    assert own(inputs).shape == (8, 3)
    plain = api.fixed_model(C.replace(cfg, final_net=C.replace(cfg.final_net, aux_weight=0.0)), arch,
                            num_classes=3, in_channels=1).train()
    assert plain(inputs).shape == (8, 3)
