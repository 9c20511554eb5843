"""Tests for enas.data.images (loaders, splits, statistics) and enas.data.augment."""

from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from enas.data.augment import augment, cutout, random_crop, random_flip, to_float
from enas.data.images import (
    CIFAR10_CLASSES,
    DataError,
    ImageDataset,
    channel_stats,
    load_images,
    split_validation,
)


def shared_data() -> Path:
    env = os.environ.get("ENAS_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


# ------------------------------------------------------------------------------------------------------ helpers


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def make_image(label: int, k: int, size: tuple[int, int] = (20, 20), gray: bool = False) -> np.ndarray:
    """An image whose pixel (0, 0) encodes its label (value // 10) and index; the rest is a gradient."""
    h, w = size
    arr = (np.arange(h * w).reshape(h, w) % 200 + 50).astype(np.uint8)
    arr[0, 0] = 10 * label + k
    return arr if gray else np.stack([arr, arr // 2, 255 - arr], axis=-1)


def write_folder(root: Path, classes: list[str], per_class: int, **kw) -> None:
    for label, cls in enumerate(classes):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            (root / cls / f"{k:04d}.png").write_bytes(png_bytes(make_image(label, k, **kw)))


def check_labels(ds: ImageDataset) -> None:
    """Pixel (0, 0) of every image written by make_image encodes the label in its tens digit."""
    for x, y in ((ds.train_x, ds.train_y), (ds.test_x, ds.test_y)):
        assert torch.equal(x[:, 0, 0, 0].long() // 10, y)


def write_pickle(path: Path, obj: object, protocol: int = 2) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=protocol))


def write_cifar10(root: Path, per_batch: int = 4, protocol: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """A tiny CIFAR-10 python folder in the real layout (bytes keys, (N, 3072) uint8 rows, label lists)."""
    rng = np.random.default_rng(seed)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, size=per_batch).tolist()
        write_pickle(root / name, {b"batch_label": name.encode(), b"labels": labels, b"data": data,
                                   b"filenames": [b"x.png"] * per_batch}, protocol)  # fmt: skip
        batches[name] = (data, np.asarray(labels))
    names = [f"c{i}".encode() for i in range(10)]
    write_pickle(root / "batches.meta", {b"label_names": names, b"num_vis": 3072}, protocol)
    return batches


class Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


# ------------------------------------------------------------------------------------------------------ digits


def test_digits_shapes_and_deterministic_split():
    a = load_images("digits", seed=3)
    assert a.name == "digits" and a.classes == tuple(str(i) for i in range(10))
    assert a.train_x.dtype == torch.uint8 and a.train_y.dtype == torch.int64
    assert a.train_x.shape[1:] == (1, 8, 8) and (a.in_channels, a.image_size, a.image_hw) == (1, 8, (8, 8))
    assert a.train_x.shape[0] + a.test_x.shape[0] == 1797
    assert abs(a.test_x.shape[0] - 0.2 * 1797) <= 10
    assert int(a.train_x.max()) == 255 and int(a.train_x.min()) == 0
    assert torch.bincount(a.test_y, minlength=10).min() >= 30  # stratified: every class in test
    b = load_images("digits", seed=3)
    assert torch.equal(a.train_x, b.train_x) and torch.equal(a.test_y, b.test_y)
    c = load_images("digits", seed=4)
    assert not torch.equal(a.test_x, c.test_x)


def test_digits_limit_and_resize():
    ds = load_images("digits", limit_per_class=10, test_fraction=0.3, image_size=16)
    assert ds.train_x.shape[0] + ds.test_x.shape[0] == 100
    assert torch.equal(torch.bincount(ds.test_y, minlength=10), torch.full((10,), 3))
    assert ds.image_hw == (16, 16)


# ------------------------------------------------------------------------------------------------ CIFAR pickles


@pytest.mark.parametrize("protocol", [2, 5])
@pytest.mark.parametrize("nested", [False, True])
def test_cifar10_pickle_folder(tmp_path, protocol, nested):
    base = tmp_path / "cifar-10-batches-py" if nested else tmp_path
    batches = write_cifar10(base, protocol=protocol)
    if protocol == 2:  # the real files name numpy 1's module; numpy 2 writes numpy._core
        raw = (base / "data_batch_1").read_bytes()
        (base / "data_batch_1").write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    ds = load_images(str(tmp_path))
    assert ds.name == "cifar10" and ds.classes == tuple(f"c{i}" for i in range(10))
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.test_x.shape == (4, 3, 32, 32)
    train_data = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    train_labels = np.concatenate([batches[f"data_batch_{i}"][1] for i in range(1, 6)])
    assert np.array_equal(ds.train_x.numpy().reshape(20, 3072), train_data)  # channel-major rows, as CIFAR
    assert np.array_equal(ds.train_y.numpy(), train_labels)
    assert np.array_equal(ds.test_y.numpy(), batches["test_batch"][1])


def test_cifar10_default_class_names_limit_and_resize(tmp_path):
    write_cifar10(tmp_path, per_batch=6)
    (tmp_path / "batches.meta").unlink()
    ds = load_images(str(tmp_path), limit_per_class=1, image_size=8)
    assert ds.classes == CIFAR10_CLASSES
    assert torch.bincount(ds.train_y, minlength=10).max() == 1
    assert ds.image_hw == (8, 8) and ds.train_x.dtype == torch.uint8


def test_cifar100_pickle_folder(tmp_path):
    rng = np.random.default_rng(1)
    base = tmp_path / "cifar-100-python"
    parts = {}
    for split, n in (("train", 7), ("test", 3)):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        fine = rng.integers(0, 100, size=n).tolist()
        write_pickle(base / split, {b"data": data, b"fine_labels": fine, b"coarse_labels": [0] * n})
        parts[split] = (data, fine)
    write_pickle(base / "meta", {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                 b"coarse_label_names": [b"c"] * 20})  # fmt: skip
    ds = load_images(str(tmp_path))
    assert ds.name == "cifar100" and ds.num_classes == 100 and ds.classes[5] == "f5"
    assert ds.train_x.shape == (7, 3, 32, 32) and ds.test_x.shape == (3, 3, 32, 32)
    assert ds.train_y.tolist() == parts["train"][1] and ds.test_y.tolist() == parts["test"][1]
    assert np.array_equal(ds.test_x.numpy().reshape(3, -1), parts["test"][0])


def test_malicious_pickle_is_refused_without_running(tmp_path):
    write_cifar10(tmp_path)
    marker = tmp_path / "pwned"
    write_pickle(tmp_path / "data_batch_3", {b"data": Evil(marker), b"labels": []})
    with pytest.raises(DataError, match=r"data_batch_3.*refused.*system"):
        load_images(str(tmp_path))
    assert not marker.exists()


def test_pickle_codecs_only_latin1(tmp_path):
    write_cifar10(tmp_path)

    class Codec:
        def __reduce__(self):
            import _codecs

            return (_codecs.encode, ("x", "rot13"))

    write_pickle(tmp_path / "test_batch", {b"data": Codec(), b"labels": []})
    with pytest.raises(DataError, match="rot13"):
        load_images(str(tmp_path))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, r"data_batch_2.*\(N, 3072\)"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0] * 3}, "3 labels for 4 images"),
        ({b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 2, 10]}, "outside 0..9"),
        ({b"labels": [0] * 4}, "missing field 'data'"),
        ([1, 2, 3], "expected a dict"),
    ],
)
def test_cifar_bad_content(tmp_path, content, message):
    write_cifar10(tmp_path)
    write_pickle(tmp_path / "data_batch_2", content)
    with pytest.raises(DataError, match=message):
        load_images(str(tmp_path))


def test_cifar_missing_and_truncated_files(tmp_path):
    write_cifar10(tmp_path)
    raw = (tmp_path / "data_batch_4").read_bytes()
    (tmp_path / "data_batch_4").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="data_batch_4.*not a readable CIFAR pickle"):
        load_images(str(tmp_path))
    (tmp_path / "data_batch_3").unlink()
    with pytest.raises(DataError, match="lacks data_batch_3"):
        load_images(str(tmp_path))


def test_cifar10_name_uses_enas_data(tmp_path, monkeypatch):
    monkeypatch.delenv("ENAS_DATA", raising=False)
    with pytest.raises(DataError, match="--data PATH"):
        load_images("cifar10")
    monkeypatch.setenv("ENAS_DATA", str(tmp_path))
    with pytest.raises(DataError, match="ENAS_DATA"):
        load_images("cifar10")
    write_cifar10(tmp_path / "cifar-10-batches-py")
    assert load_images("cifar10").train_x.shape[0] == 20


# ------------------------------------------------------------------------------------------------ image folders


def test_folder_with_train_test_split(tmp_path):
    classes = ["zebra", "apple", "mango"]
    write_folder(tmp_path / "train", classes, 4)
    write_folder(tmp_path / "test", classes, 2)
    ds = load_images(str(tmp_path))
    assert ds.classes == ("apple", "mango", "zebra")  # sorted when not the CIFAR-10 names
    assert ds.train_x.shape == (12, 3, 20, 20) and ds.test_x.shape == (6, 3, 20, 20)
    # make_image labels follow `classes`; remap to the sorted order before checking
    remap = torch.tensor([ds.classes.index(c) for c in classes])
    assert torch.equal(remap[ds.train_x[:, 0, 0, 0].long() // 10], ds.train_y)
    assert torch.equal(remap[ds.test_x[:, 0, 0, 0].long() // 10], ds.test_y)
    limited = load_images(str(tmp_path), limit_per_class=1)
    assert limited.train_x.shape[0] == 3 and limited.test_x.shape[0] == 3
    Image.fromarray(make_image(0, 5, size=(20, 21))).save(tmp_path / "test" / "apple" / "0005.png")
    with pytest.raises(DataError, match=r"train/apple/0000\.png is 20x20 but .*test/apple/0005\.png is 21x20"):
        load_images(str(tmp_path))


def test_folder_without_split_is_stratified_and_seeded(tmp_path):
    write_folder(tmp_path, ["a", "b", "c"], 5)
    a = load_images(str(tmp_path), test_fraction=0.4, seed=1)
    assert a.name == tmp_path.name and a.classes == ("a", "b", "c")
    assert torch.equal(torch.bincount(a.test_y), torch.tensor([2, 2, 2]))
    assert a.train_x.shape == (9, 3, 20, 20)
    check_labels(a)
    b = load_images(str(tmp_path), test_fraction=0.4, seed=1)
    assert torch.equal(a.test_x, b.test_x)
    c = load_images(str(tmp_path), test_fraction=0.4, seed=2)
    assert not torch.equal(a.test_x, c.test_x)


def test_folder_mixed_sizes(tmp_path):
    write_folder(tmp_path, ["a", "b"], 3)
    Image.fromarray(make_image(1, 9, size=(12, 17))).save(tmp_path / "b" / "0009.png")
    with pytest.raises(DataError, match=r"a/0000\.png is 20x20 but .*b/0009\.png is 17x12.*image_size"):
        load_images(str(tmp_path))
    ds = load_images(str(tmp_path), image_size=10, test_fraction=0.3)
    assert ds.image_hw == (10, 10) and ds.train_x.shape[0] + ds.test_x.shape[0] == 7


def test_folder_grayscale_and_mixed_modes(tmp_path):
    write_folder(tmp_path, ["a", "b"], 3, gray=True)
    ds = load_images(str(tmp_path))
    assert ds.in_channels == 1
    check_labels(ds)
    Image.fromarray(make_image(0, 7)).save(tmp_path / "a" / "0007.jpg", quality=95)
    ds = load_images(str(tmp_path))
    assert ds.in_channels == 3
    every = torch.cat([ds.train_x, ds.test_x])
    same = ((every[:, 0] == every[:, 1]) & (every[:, 0] == every[:, 2])).flatten(1).all(1)
    assert int(same.sum()) == 6  # the six grayscale PNGs are replicated into all channels; the JPEG is colour


def test_folder_cifar10_names_keep_cifar_order(tmp_path):
    names = sorted(CIFAR10_CLASSES)
    write_folder(tmp_path / "train", names, 1, size=(4, 4))
    write_folder(tmp_path / "test", names, 1, size=(4, 4))
    assert load_images(str(tmp_path)).classes == CIFAR10_CLASSES


def test_zip_layout(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        with zipfile.ZipFile(tmp_path / f"{split}.zip", "w") as z:
            z.writestr(f"{split}/", b"")
            for label, cls in enumerate(["dog", "cat"]):
                for k in range(n):
                    z.writestr(f"{split}/{cls}/{k:04d}.png", png_bytes(make_image(label, k)))
    ds = load_images(str(tmp_path))
    assert ds.classes == ("cat", "dog") and ds.train_x.shape == (6, 3, 20, 20) and ds.test_x.shape[0] == 4
    assert torch.equal(1 - ds.train_x[:, 0, 0, 0].long() // 10, ds.train_y)  # dog was written as 0
    (tmp_path / "test.zip").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"test\.zip: not a readable zip"):
        load_images(str(tmp_path))
    (tmp_path / "test.zip").unlink()
    with pytest.raises(DataError, match=r"no test\.zip"):
        load_images(str(tmp_path))


# ------------------------------------------------------------------------------------------------- error cases


def test_errors_for_paths_and_layouts(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_images(str(tmp_path / "nope"))
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        load_images(str(tmp_path / "file.txt"))
    with pytest.raises(DataError, match="unknown dataset layout; accepted: CIFAR-10"):
        load_images(str(tmp_path))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        load_images(str(tmp_path / "empty"))


def test_errors_for_classes(tmp_path):
    write_folder(tmp_path / "one", ["only"], 3)
    with pytest.raises(DataError, match="need at least 2"):
        load_images(str(tmp_path / "one"))

    write_folder(tmp_path / "hollow", ["a", "b"], 2)
    (tmp_path / "hollow" / "c").mkdir()
    (tmp_path / "hollow" / "c" / "notes.txt").write_text("no images here")
    with pytest.raises(DataError, match=r"hollow/c: class folder has no images"):
        load_images(str(tmp_path / "hollow"))

    write_folder(tmp_path / "split" / "train", ["a", "b", "c"], 2)
    write_folder(tmp_path / "split" / "test", ["a", "b", "d"], 2)
    with pytest.raises(DataError, match=r"class sets differ.*only in train: \['c'\].*only in test: \['d'\]"):
        load_images(str(tmp_path / "split"))

    write_folder(tmp_path / "half" / "train", ["a", "b"], 2)
    with pytest.raises(DataError, match="no test/ folder"):
        load_images(str(tmp_path / "half"))

    (tmp_path / "noclass" / "train").mkdir(parents=True)
    (tmp_path / "noclass" / "test").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        load_images(str(tmp_path / "noclass"))


def test_error_for_corrupt_image(tmp_path):
    write_folder(tmp_path, ["a", "b"], 2)
    (tmp_path / "b" / "0001.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataError, match=r"b/0001\.png: cannot read image"):
        load_images(str(tmp_path))
    full = png_bytes(make_image(1, 1))
    (tmp_path / "b" / "0001.png").write_bytes(full[: len(full) // 2])  # truncated
    with pytest.raises(DataError, match=r"b/0001\.png: cannot read image"):
        load_images(str(tmp_path))


def test_error_for_bad_png_batches(tmp_path):
    (tmp_path / "cifar10_labels.js").write_text("var labels=[1,2,")
    with pytest.raises(DataError, match="cifar10_labels.js"):
        load_images(str(tmp_path))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"test_fraction": 1.5}, "test_fraction"), ({"image_size": 0}, "image_size"),
     ({"limit_per_class": 0}, "limit_per_class")],
)  # fmt: skip
def test_error_for_bad_arguments(kwargs, field):
    with pytest.raises(DataError, match=field):
        load_images("digits", **kwargs)


def test_import_is_light():
    code = "import sys, enas.data.images, enas.data.augment; assert 'PIL.Image' not in sys.modules; " \
           "assert 'sklearn' not in sys.modules"  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# --------------------------------------------------------------------------------------- shared real datasets


def test_png_subset_from_shared_data():
    root = shared_data() / "cifar10-png-subset"
    if not (root / "cifar10_labels.js").is_file():
        pytest.skip(f"shared CIFAR-10 PNG subset not found at {root} (set ENAS_SHARED_DATA)")
    ds = load_images(str(root))
    assert ds.classes == CIFAR10_CLASSES
    assert ds.train_x.shape == (4000, 3, 32, 32) and ds.test_x.shape == (1000, 3, 32, 32)
    assert ds.train_y[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert ds.test_y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert ds.train_x[0, :, 0, 0].tolist() == [59, 62, 63]
    assert ds.train_x[0, :, 0, 1].tolist() == [43, 46, 45]
    assert ds.test_x[0, :, 0, 0].tolist() == [158, 112, 49]
    assert torch.bincount(ds.train_y).tolist() == [396, 366, 420, 384, 422, 393, 414, 385, 407, 413]


def test_jpeg_zips_from_shared_data():
    root = shared_data() / "cifar10-jpg"
    if not (root / "train.zip").is_file():
        pytest.skip(f"shared CIFAR-10 JPEG zips not found at {root} (set ENAS_SHARED_DATA)")
    ds = load_images(str(root), limit_per_class=3)
    assert ds.classes == CIFAR10_CLASSES
    assert ds.train_x.shape == (30, 3, 32, 32) and ds.test_x.shape == (30, 3, 32, 32)
    assert ds.train_y.tolist() == [c for c in range(10) for _ in range(3)]
    png = shared_data() / "cifar10-png-subset" / "cifar10_batch_0.png"
    if png.is_file():  # train/frog/0000.jpg is CIFAR train image 0, a frog: a lossy copy of the PNG one
        with Image.open(png) as im:
            first = torch.from_numpy(np.asarray(im.convert("RGB"))[0].reshape(32, 32, 3).transpose(2, 0, 1).copy())
        frog = ds.train_x[ds.train_y == CIFAR10_CLASSES.index("frog")][0]
        assert (frog.float() - first.float()).abs().mean() < 12


# --------------------------------------------------------------------------------------- splits and statistics


def test_split_validation():
    x = torch.arange(20, dtype=torch.uint8).reshape(20, 1, 1, 1)
    y = torch.arange(20)
    tx, ty, vx, vy = split_validation(x, y, 5, torch.Generator().manual_seed(0))
    assert len(vy) == 5 and len(ty) == 15
    assert sorted(torch.cat([ty, vy]).tolist()) == list(range(20))
    assert torch.equal(tx.flatten().long(), ty) and torch.equal(vx.flatten().long(), vy)
    again = split_validation(x, y, 5, torch.Generator().manual_seed(0))
    assert torch.equal(again[3], vy)
    other = split_validation(x, y, 5, torch.Generator().manual_seed(1))
    assert not torch.equal(other[3], vy)
    assert len(split_validation(x, y, 0.25, torch.Generator())[3]) == 5
    for bad in (0, 20, 0.0, 1.0, 0.01, True):
        with pytest.raises(DataError, match="n_valid"):
            split_validation(x, y, bad, torch.Generator())


def test_channel_stats():
    x = torch.randint(0, 256, (50, 3, 6, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = channel_stats(x)
    f = x.double() / 255
    assert torch.allclose(mean.double(), f.mean(dim=(0, 2, 3)), atol=1e-6)
    assert torch.allclose(std.double(), f.std(dim=(0, 2, 3), unbiased=False), atol=1e-6)
    normed = to_float(x, mean, std)
    assert torch.allclose(normed.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(normed.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)
    assert torch.equal(channel_stats(torch.full((2, 1, 3, 3), 51, dtype=torch.uint8))[1], torch.zeros(1))


# ------------------------------------------------------------------------------------------------ augmentation


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def shift(img: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[y, x] = img[y + dy, x + dx], zero outside."""
    out = torch.zeros_like(img)
    h, w = img.shape[-2:]
    out[:, max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)] = img[
        :, max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)
    ]
    return out


@pytest.mark.parametrize("dtype", [torch.float32, torch.uint8])
def test_random_crop_is_a_shifted_copy(dtype):
    pad = 2
    x = torch.randint(1, 255, (32, 3, 8, 7), generator=gen(0)).to(dtype)
    out = random_crop(x, pad, gen(1))
    assert out.shape == x.shape and out.dtype == dtype
    found = set()
    for i in range(x.shape[0]):
        matches = [
            (dy, dx)
            for dy in range(-pad, pad + 1)
            for dx in range(-pad, pad + 1)
            if torch.equal(out[i], shift(x[i], dy, dx))
        ]
        assert len(matches) == 1
        found.add(matches[0])
    assert len(found) > 5  # offsets differ between images
    assert torch.equal(random_crop(x, 0, gen(1)), x)


def test_random_flip_flips_whole_chosen_images():
    x = torch.randn(64, 3, 5, 6, generator=gen(0))
    out = random_flip(x, gen(2))
    flipped = torch.tensor([torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert bool((flipped ^ kept).all())  # every image is exactly one of the two
    assert 16 <= int(flipped.sum()) <= 48


def test_cutout_zeroes_a_square():
    size = 6
    x = torch.ones(64, 3, 20, 20)
    out = cutout(x, size, gen(3))
    interior = 0
    for img in out:
        zero = img == 0
        assert torch.equal(zero[0], zero[1]) and torch.equal(zero[0], zero[2])  # all channels
        ys, xs = torch.nonzero(zero[0], as_tuple=True)
        y0, y1, x0, x1 = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
        h, w = y1 - y0 + 1, x1 - x0 + 1
        assert int(zero[0].sum()) == h * w and h <= size and w <= size  # a filled rectangle
        if y0 > 0 and x0 > 0 and y1 < 19 and x1 < 19:
            interior += 1
            assert int(zero.sum()) == size * size * 3
    assert interior > 10
    assert torch.equal(cutout(x, 0, gen(3)), x)


def test_augment_seeded():
    x = to_float(torch.randint(0, 256, (16, 3, 12, 12), dtype=torch.uint8, generator=gen(0)), [0.5] * 3, [0.25] * 3)
    a = augment(x, gen(7), pad=2, flip=True, cutout_size=4)
    b = augment(x, gen(7), pad=2, flip=True, cutout_size=4)
    c = augment(x, gen(8), pad=2, flip=True, cutout_size=4)
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(augment(x, gen(7), pad=0, flip=False, cutout_size=0), x)
