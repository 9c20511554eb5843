"""Image classification datasets as uint8 tensors, from names or directories; splits and channel statistics.

Accepted sources (see ``load_images``):

* ``"digits"``: scikit-learn's embedded 8x8 digits (no download), split train/test here.
* ``"cifar10"`` / ``"cifar100"``: the python-pickle folder found under the ``ENAS_DATA`` environment variable.
* a directory in one of these layouts:
  - CIFAR-10 python batches: ``data_batch_1..5``, ``test_batch``, optional ``batches.meta``
    (directly or in a nested ``cifar-10-batches-py/``);
  - CIFAR-100 python: ``train``, ``test``, optional ``meta`` (fine labels; directly or in ``cifar-100-python/``);
  - ConvNetJS CIFAR-10 PNG batches: ``cifar10_batch_<K>.png`` (K < 50 train, K = 50 test) + ``cifar10_labels.js``;
  - ``train.zip`` + ``test.zip`` whose members are ``<split>/<class>/<image>``;
  - an image folder: ``train/<class>/<image>`` + ``test/<class>/<image>``, or ``<class>/<image>`` (split here).

* ``"python:<name>:<digest>"``: data passed from Python (``memory_source``: a pair of tensors ``(x, y)`` or any
  map-style ``torch.utils.data.Dataset`` of ``(image, label)``), named by a digest of its content. It lives in
  this process only: ``api.search`` / ``api.train`` register it for the length of the call.

CIFAR pickles are read with a restricted unpickler that can only rebuild numpy arrays; anything else is refused.
Every problem is reported as a one-line ``DataError`` that names the file or field. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import logging
import os
import pickle
import re
import time
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from ..errors import EnasError

log = logging.getLogger(__name__)

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
NAMES = ("digits", "cifar10", "cifar100")
LAYOUTS = (
    "CIFAR-10 python batches (data_batch_1..5, test_batch), "
    "CIFAR-100 python (train, test, meta), "
    "ConvNetJS PNG batches (cifar10_batch_*.png + cifar10_labels.js), "
    "train.zip + test.zip with <split>/<class>/<image> members, "
    "or an image folder (<class>/<image>, or train/<class>/<image> + test/<class>/<image>)"
)
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_PROGRESS_EVERY = 10_000
_CHUNK = 4096  # images per chunk for resizing and statistics


class DataError(EnasError, ValueError):
    """A dataset source is missing, malformed or unsafe. The message is one line naming the path/field."""


@dataclass(frozen=True)
class ImageDataset:
    """A train/test image classification dataset. Images are uint8 (N, C, H, W); labels int64 (N,)."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x, y = getattr(self, f"{part}_x"), getattr(self, f"{part}_y")
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise DataError(f"{self.name}: {part}_x must be uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.dim() != 1 or y.shape[0] != x.shape[0]:
                raise DataError(f"{self.name}: {part}_y must be int64 (N,) with N={x.shape[0]}, got {tuple(y.shape)}")
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise DataError(f"{self.name}: {part}_y has labels outside 0..{len(self.classes) - 1}")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise DataError(
                f"{self.name}: train images {tuple(self.train_x.shape[1:])} and test images "
                f"{tuple(self.test_x.shape[1:])} differ in shape"
            )

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        """Image height (use ``image_hw`` when images are not square)."""
        return int(self.train_x.shape[2])

    @property
    def image_hw(self) -> tuple[int, int]:
        return int(self.train_x.shape[2]), int(self.train_x.shape[3])


# ----------------------------------------------------------------------------------------------- entry point


def load_images(
    source: str | os.PathLike[str],
    *,
    image_size: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    limit_per_class: int | None = None,
) -> ImageDataset:
    """Load an image dataset from a name (``digits``, ``cifar10``, ``cifar100``) or a directory.

    ``image_size`` resizes every image to a square (PIL bilinear for files, antialiased bilinear for arrays).
    ``test_fraction`` and ``seed`` drive the stratified split of sources without a test set (digits,
    ``<class>/<image>`` folders). ``limit_per_class`` keeps the first K images of each class (in file-name
    order) of each split; for sources split here it applies before the split.
    """
    if image_size is not None and (isinstance(image_size, bool) or image_size < 1):
        raise DataError(f"image_size: must be a positive integer, got {image_size!r}")
    if not 0.0 < test_fraction < 1.0:
        raise DataError(f"test_fraction: must be in (0, 1), got {test_fraction!r}")
    if limit_per_class is not None and (isinstance(limit_per_class, bool) or limit_per_class < 1):
        raise DataError(f"limit_per_class: must be a positive integer, got {limit_per_class!r}")
    opts = _Options(image_size, float(test_fraction), int(seed), limit_per_class)

    text = os.fspath(source)
    start = time.perf_counter()
    if text.startswith(MEMORY_PREFIX):
        ds = _load_memory(text, opts)
    elif text == "digits":
        ds = _load_digits(opts)
    elif text in ("cifar10", "cifar100"):
        ds = _load_dir(_named_dir(text), opts)
    else:
        ds = _load_dir(Path(text).expanduser(), opts)
    log.info(
        "loaded %s: %d train, %d test, %d classes, %dx%dx%d, %.1fs",
        ds.name, ds.train_x.shape[0], ds.test_x.shape[0], ds.num_classes,
        ds.in_channels, *ds.image_hw, time.perf_counter() - start,
    )  # fmt: skip
    return ds


@dataclass(frozen=True)
class _Options:
    image_size: int | None
    test_fraction: float
    seed: int
    limit: int | None


def _named_dir(name: str) -> Path:
    folder = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
    env = os.environ.get("ENAS_DATA")
    if not env:
        raise DataError(
            f"{name}: no local copy known (nothing is downloaded); pass --data PATH to a {folder}/ folder, "
            f"or set ENAS_DATA to the directory that holds {folder}/"
        )
    base = Path(env).expanduser()
    for candidate in (base / folder, base):
        if (candidate / ("data_batch_1" if name == "cifar10" else "train")).is_file():
            return candidate
    raise DataError(f"{name}: ENAS_DATA={env} holds no {folder}/ folder; pass --data PATH instead")


def _load_dir(root: Path, opts: _Options) -> ImageDataset:
    if not root.exists():
        hint = f" (known names: {', '.join(NAMES)})" if os.sep not in str(root) else ""
        raise DataError(f"{root}: path does not exist{hint}")
    if not root.is_dir():
        raise DataError(f"{root}: not a directory")
    if not _visible(root):
        raise DataError(f"{root}: directory is empty")
    for base in (root, root / "cifar-10-batches-py"):
        if (base / "data_batch_1").is_file() or (base / "test_batch").is_file():
            return _load_cifar10(base, opts)
    for base in (root, root / "cifar-100-python"):
        if (base / "train").is_file() and (base / "test").is_file():
            return _load_cifar100(base, opts)
    if (root / "cifar10_labels.js").is_file():
        return _load_png_batches(root, opts)
    if (root / "train.zip").is_file() or (root / "test.zip").is_file():
        return _load_zips(root, opts)
    if any(p.is_dir() for p in _visible(root)):
        return _load_folder(root, opts)
    raise DataError(f"{root}: unknown dataset layout; accepted: {LAYOUTS}")


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


# ------------------------------------------------------------------------------------------------------ digits


def _load_digits(opts: _Options) -> ImageDataset:
    from sklearn.datasets import load_digits  # local import: sklearn is slow to import

    bunch = load_digits()
    x = np.rint(np.asarray(bunch.images, dtype=np.float64) * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    y = np.asarray(bunch.target, dtype=np.int64)
    if opts.limit is not None:
        keep = _first_k_per_class(y, opts.limit)
        x, y = x[keep], y[keep]
    train, test = _stratified_split(y, opts.test_fraction, opts.seed, "digits")
    xt = torch.from_numpy(x[:, None])  # (N, 1, 8, 8)
    yt = torch.from_numpy(y)
    return _finish("digits", xt[train], yt[train], xt[test], yt[test], tuple(str(i) for i in range(10)), opts)


# --------------------------------------------------------------------------------------- data passed from Python

MEMORY_PREFIX = "python:"


@dataclass(frozen=True)
class _Memory:
    name: str
    train: tuple[torch.Tensor, torch.Tensor]  # uint8 (N, C, H, W), int64 (N,)
    test: tuple[torch.Tensor, torch.Tensor] | None  # None: split here, as an image folder is
    classes: tuple[str, ...]


_MEMORY: dict[str, _Memory] = {}


def memory_source(data: Any, test: Any = None, *, classes: Sequence[str] | None = None, name: str | None = None) -> str:
    """Hold images passed from Python in this process and return the ``data.source`` that names them.

    ``data`` (and ``test``, when the test set is given rather than split off) is a pair ``(x, y)`` of tensors
    or arrays, or a map-style ``torch.utils.data.Dataset`` (``len`` and ``ds[i]``) whose items are
    ``(image, label)`` (or dicts with ``image``/``img`` and ``label``/``labels`` keys, as Hugging Face
    ``datasets`` give). Images are uint8 0..255 or floats in [0, 1] (un-normalised: normalisation and
    augmentation happen on the device, as for every source), shaped (C, H, W) or (H, W) per image (a PIL image is
    read as (H, W, C)); ``x`` is (N, C, H, W) or (N, H, W). Labels are integers 0..K-1. Without ``test`` the
    test set is split off as from an image folder (stratified, ``run.seed``): the same images in the same order
    give the same run as that folder. ``classes`` default to the dataset's ``classes`` attribute or "0".."K-1".
    The name is ``python:<name>:<digest of the content>``, so a run records which data it saw; the data itself
    is not saved, so only a caller that passes the same data again can resume the run (see ``release_source``).
    """
    tx, ty = _memory_part(data, "data")
    test_part = None if test is None else _memory_part(test, "test")
    if test_part is not None and tuple(test_part[0].shape[1:]) != tuple(tx.shape[1:]):
        raise DataError(f"test: images are {tuple(test_part[0].shape[1:])}, training images {tuple(tx.shape[1:])}")
    k = int(max(int(ty.max()), int(test_part[1].max()) if test_part is not None else 0)) + 1
    if classes is None:
        found = getattr(data, "classes", None)
        classes = tuple(str(c) for c in found) if isinstance(found, (list, tuple)) and len(found) >= k else \
            tuple(str(i) for i in range(k))
    classes = tuple(str(c) for c in classes)
    if len(classes) < max(k, 2):
        raise DataError(f"classes: {len(classes)} names for labels 0..{k - 1} (need at least 2 classes)")
    label = name or ("tensors" if isinstance(data, (tuple, list)) else type(data).__name__)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", label):
        raise DataError(f"name: letters, digits, '_', '.' and '-' only, got {label!r}")
    h = hashlib.sha256()
    for t in (tx, ty) + (test_part or ()):
        h.update(repr((t.dtype, tuple(t.shape))).encode())
        h.update(t.contiguous().numpy().tobytes())
    h.update(json.dumps([list(classes), test_part is None]).encode())
    source = f"{MEMORY_PREFIX}{label}:{h.hexdigest()[:16]}"
    _MEMORY[source] = _Memory(label, (tx, ty), test_part, classes)
    return source


def release_source(source: str) -> None:
    """Forget data held by ``memory_source`` (nothing happens for other sources)."""
    _MEMORY.pop(source, None)


def is_memory_source(source: str) -> bool:
    return str(source).startswith(MEMORY_PREFIX)


def _load_memory(source: str, opts: _Options) -> ImageDataset:
    m = _MEMORY.get(source)
    if m is None:
        raise DataError(f"data.source {source}: this data was passed from Python (tensors or a Dataset) and is not "
                        "saved with the run; resume it from Python with the same data: "
                        "api.search(cfg, data=..., resume=RUN_DIR)")
    (x, y), classes = m.train, m.classes
    if m.test is not None:
        return _from_arrays(m.name, (x.numpy(), y.numpy()), (m.test[0].numpy(), m.test[1].numpy()), classes, opts)
    yn = y.numpy()
    if opts.limit is not None:
        keep = _first_k_per_class(yn, opts.limit)
        x, y, yn = x[keep], y[keep], yn[keep]
    train, test = _stratified_split(yn, opts.test_fraction, opts.seed, source)
    tr, te = torch.from_numpy(train), torch.from_numpy(test)
    return _finish(m.name, x[tr], y[tr], x[te], y[te], classes, opts)


def _memory_part(data: Any, what: str) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (N, C, H, W) images and int64 (N,) labels from a pair of tensors/arrays or a map-style dataset."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and not isinstance(data[0], (tuple, list, dict)):
        x, y = (torch.as_tensor(np.asarray(v)) if not torch.is_tensor(v) else v for v in data)
        x = x.detach().cpu()
        if x.dim() == 3:
            x = x[:, None]
        if x.dim() != 4:
            raise DataError(f"{what}: images must be (N, C, H, W) or (N, H, W), got {tuple(x.shape)}")
        if x.shape[1] > 4 and x.shape[3] in (1, 3, 4):
            raise DataError(f"{what}: images look channels-last {tuple(x.shape)}; pass x.permute(0, 3, 1, 2)")
        return _to_uint8(x, what), _labels(y.detach().cpu(), len(x), what)
    if not _is_dataset(data):
        raise DataError(f"{what}: expected a pair (x, y) of tensors or a map-style Dataset of (image, label), got "
                        f"{type(data).__name__}")
    n = len(data)
    if n < 2:
        raise DataError(f"{what}: {n} items; need at least 2")
    images, labels, first = [], [], None
    for i in range(n):
        img, lab = _item(data[i], i, what)
        if first is None:
            first = img.shape
        elif img.shape != first:
            raise DataError(f"{what}[{i}]: image is {tuple(img.shape)}, item 0 is {tuple(first)}; give every image "
                            "one size (e.g. a Resize transform)")
        images.append(_to_uint8(img[None], f"{what}[{i}]"))
        labels.append(lab)
    return torch.cat(images), _labels(torch.tensor(labels), n, what)


def _is_dataset(data: Any) -> bool:
    """Map-style: ``len`` and integer indexing (a list of items counts; a tensor, string or mapping does not)."""
    return hasattr(data, "__getitem__") and hasattr(data, "__len__") and not isinstance(data, (str, bytes, dict)) \
        and not torch.is_tensor(data) and not isinstance(data, np.ndarray)


def _item(item: Any, i: int, what: str) -> tuple[torch.Tensor, int]:
    if isinstance(item, dict):
        img = next((item[k] for k in ("image", "img", "pixel_values") if k in item), None)
        lab = next((item[k] for k in ("label", "labels", "fine_label") if k in item), None)
        if img is None or lab is None:
            raise DataError(f"{what}[{i}]: a dict item needs an image/img and a label/labels key, has {sorted(item)}")
    elif isinstance(item, (tuple, list)) and len(item) >= 2:
        img, lab = item[0], item[1]
    else:
        raise DataError(f"{what}[{i}]: expected (image, label), got {type(item).__name__}")
    if not torch.is_tensor(img):
        arr = np.asarray(img)  # a PIL image: (H, W) or (H, W, C)
        if arr.ndim == 3:
            arr = arr.transpose(2, 0, 1)
        img = torch.from_numpy(np.ascontiguousarray(arr))
    img = img.detach().cpu()
    if img.dim() == 2:
        img = img[None]
    if img.dim() != 3:
        raise DataError(f"{what}[{i}]: image must be (C, H, W) or (H, W), got {tuple(img.shape)}")
    try:
        lab = int(lab.item() if torch.is_tensor(lab) else lab)
    except (TypeError, ValueError):
        raise DataError(f"{what}[{i}]: label must be an integer, got {lab!r}") from None
    return img, lab


def _to_uint8(x: torch.Tensor, what: str) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x.contiguous()
    if x.is_floating_point():
        if x.numel() and (not torch.isfinite(x).all() or float(x.min()) < 0 or float(x.max()) > 1):
            raise DataError(f"{what}: float images must lie in [0, 1] (not normalised: the run normalises them)")
        return (x.float() * 255).round_().to(torch.uint8).contiguous()
    if x.dtype in (torch.int16, torch.int32, torch.int64, torch.int8):
        if x.numel() and (int(x.min()) < 0 or int(x.max()) > 255):
            raise DataError(f"{what}: integer images must lie in 0..255")
        return x.to(torch.uint8).contiguous()
    raise DataError(f"{what}: images of dtype {x.dtype}; expected uint8 or floats in [0, 1]")


def _labels(y: torch.Tensor, n: int, what: str) -> torch.Tensor:
    if y.dim() != 1 or len(y) != n:
        raise DataError(f"{what}: {n} images but labels of shape {tuple(y.shape)}")
    if y.is_floating_point() or y.dtype == torch.bool:
        if y.is_floating_point() and not torch.equal(y, y.round()):
            raise DataError(f"{what}: labels must be integers")
    y = y.long()
    if n and int(y.min()) < 0:
        raise DataError(f"{what}: labels must be >= 0, got {int(y.min())}")
    return y.contiguous()


# ------------------------------------------------------------------------------------------------ CIFAR pickles


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Stand-in for ``_codecs.encode`` (how Python 3 writes bytes at pickle protocol < 3); latin-1 only."""
    if encoding.lower().replace("_", "-") not in ("latin1", "latin-1", "iso-8859-1"):
        raise DataError(f"pickle: refused _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _numpy_attr(submodule: str, name: str) -> Any:
    for module in (f"numpy._core.{submodule}", f"numpy.core.{submodule}"):
        try:
            found = importlib.import_module(module)
        except ImportError:
            continue
        if hasattr(found, name):
            return getattr(found, name)
    raise DataError(f"pickle: numpy has no {submodule}.{name}")


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can build numpy arrays (as CIFAR pickles need) and nothing else."""

    _NUMPY = {
        ("multiarray", "_reconstruct"),
        ("multiarray", "scalar"),
        ("numeric", "_frombuffer"),
    }
    _BUILTINS = {"set": set, "frozenset": frozenset, "bytearray": bytearray, "complex": complex}

    def find_class(self, module: str, name: str) -> Any:
        if module == "numpy" and name == "ndarray":
            return np.ndarray
        if module == "numpy" and name == "dtype":
            return np.dtype
        for prefix in ("numpy.core.", "numpy._core."):
            if module.startswith(prefix) and (module[len(prefix) :], name) in self._NUMPY:
                return _numpy_attr(module[len(prefix) :], name)
        if module in ("builtins", "__builtin__") and name in self._BUILTINS:
            return self._BUILTINS[name]
        if module == "_codecs" and name == "encode":
            return _latin1_encode
        raise DataError(f"refused to load {module}.{name} (only numpy arrays are allowed in dataset pickles)")


def _read_pickle(path: Path) -> dict[str, Any]:
    """Unpickle one CIFAR file safely; return its dict with str keys."""
    try:
        with path.open("rb") as f:
            obj = _RestrictedUnpickler(f, encoding="latin1").load()
    except DataError as e:
        raise DataError(f"{path}: {e}") from None
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError, AttributeError,
            IndexError, KeyError, MemoryError) as e:  # fmt: skip
        raise DataError(f"{path}: not a readable CIFAR pickle ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict in the pickle, got {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def _names(value: Any, path: Path, key: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise DataError(f"{path}: '{key}' must be a list of names")
    return tuple(v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in value)


def _cifar_arrays(path: Path, label_key: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    d = _read_pickle(path)
    for key in ("data", label_key):
        if key not in d:
            raise DataError(f"{path}: missing field '{key}' (has {sorted(d)})")
    data, labels = d["data"], d[label_key]
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        shape = getattr(data, "shape", type(data).__name__)
        raise DataError(f"{path}: field 'data' must be an (N, 3072) array, got {shape}")
    if data.dtype != np.uint8:
        if not np.issubdtype(data.dtype, np.integer) or data.size and (data.min() < 0 or data.max() > 255):
            raise DataError(f"{path}: field 'data' must hold bytes 0..255, got dtype {data.dtype}")
        data = data.astype(np.uint8)
    try:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise DataError(f"{path}: field '{label_key}' must be a list of integers") from None
    if y.shape[0] != data.shape[0]:
        raise DataError(f"{path}: field '{label_key}' has {y.shape[0]} labels for {data.shape[0]} images")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise DataError(f"{path}: field '{label_key}' has labels outside 0..{num_classes - 1}")
    return data.reshape(-1, 3, 32, 32), y


def _load_cifar10(base: Path, opts: _Options) -> ImageDataset:
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    missing = [f for f in files if not (base / f).is_file()]
    if missing:
        raise DataError(f"{base}: CIFAR-10 folder lacks {', '.join(missing)}")
    classes = CIFAR10_CLASSES
    if (base / "batches.meta").is_file():
        meta = _read_pickle(base / "batches.meta")
        if "label_names" in meta:
            classes = _names(meta["label_names"], base / "batches.meta", "label_names")
    parts = [_cifar_arrays(base / f, "labels", len(classes)) for f in files]
    train_x = np.concatenate([p[0] for p in parts[:5]])
    train_y = np.concatenate([p[1] for p in parts[:5]])
    return _from_arrays("cifar10", (train_x, train_y), parts[5], classes, opts)


def _load_cifar100(base: Path, opts: _Options) -> ImageDataset:
    classes = tuple(str(i) for i in range(100))
    if (base / "meta").is_file():
        meta = _read_pickle(base / "meta")
        if "fine_label_names" in meta:
            classes = _names(meta["fine_label_names"], base / "meta", "fine_label_names")
    train = _cifar_arrays(base / "train", "fine_labels", len(classes))
    test = _cifar_arrays(base / "test", "fine_labels", len(classes))
    return _from_arrays("cifar100", train, test, classes, opts)


# ------------------------------------------------------------------------------------------ ConvNetJS PNG batches


def _load_png_batches(root: Path, opts: _Options) -> ImageDataset:
    labels_path = root / "cifar10_labels.js"
    text = labels_path.read_text(encoding="utf-8", errors="replace")
    lo, hi = text.find("["), text.rfind("]")
    try:
        labels = np.asarray(json.loads(text[lo : hi + 1]), dtype=np.int64) if 0 <= lo < hi else None
    except (ValueError, TypeError):
        labels = None
    if labels is None or labels.ndim != 1:
        raise DataError(f"{labels_path}: expected 'var labels=[...]' with a list of integers")
    if labels.size and (labels.min() < 0 or labels.max() >= 10):
        raise DataError(f"{labels_path}: labels outside 0..9")
    train_batches = [k for k in range(50) if (root / f"cifar10_batch_{k}.png").is_file()]
    if not train_batches:
        raise DataError(f"{root}: no training batches cifar10_batch_0.png .. cifar10_batch_49.png")
    if not (root / "cifar10_batch_50.png").is_file():
        raise DataError(f"{root}: missing the test batch cifar10_batch_50.png")
    needed = max(50_000 + 1000, 1000 * (max(train_batches) + 1))
    if labels.size < needed:
        raise DataError(f"{labels_path}: has {labels.size} labels, need {needed}")

    def batch(k: int) -> np.ndarray:
        path = root / f"cifar10_batch_{k}.png"
        try:
            from PIL import Image

            with Image.open(path) as im:
                arr = np.asarray(im.convert("RGB"))
        except Exception as e:  # any decoder failure is a data problem with this file
            raise DataError(f"{path}: cannot read image ({type(e).__name__}: {e})") from None
        if arr.shape != (1000, 1024, 3):
            raise DataError(f"{path}: expected a 1024x1000 image, got {arr.shape[1]}x{arr.shape[0]}")
        return arr.reshape(1000, 32, 32, 3).transpose(0, 3, 1, 2)

    train_x = np.concatenate([batch(k) for k in train_batches])
    train_y = np.concatenate([labels[1000 * k : 1000 * (k + 1)] for k in train_batches])
    test = (batch(50), labels[50_000:51_000])
    return _from_arrays("cifar10-png-subset", (train_x, train_y), test, CIFAR10_CLASSES, opts)


# ---------------------------------------------------------------------------------------- zips and image folders


def _class_order(names: Sequence[str]) -> tuple[str, ...]:
    """CIFAR-10's order when the classes are exactly its ten names, else sorted."""
    return CIFAR10_CLASSES if set(names) == set(CIFAR10_CLASSES) else tuple(sorted(names))


def _is_image(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and base.lower().endswith(IMAGE_SUFFIXES)


def _check_classes(where: str, train: set[str], test: set[str]) -> tuple[str, ...]:
    if train != test:
        only_train, only_test = sorted(train - test), sorted(test - train)
        raise DataError(
            f"{where}: train and test class sets differ (only in train: {only_train or '-'}; "
            f"only in test: {only_test or '-'})"
        )
    if len(train) < 2:
        raise DataError(f"{where}: found {len(train)} class ({sorted(train)}); need at least 2")
    return _class_order(sorted(train))


def _load_zips(root: Path, opts: _Options) -> ImageDataset:
    for split in ("train", "test"):
        if not (root / f"{split}.zip").is_file():
            raise DataError(f"{root}: has {'test' if split == 'train' else 'train'}.zip but no {split}.zip")
    members: dict[str, dict[str, list[str]]] = {}
    archives: dict[str, zipfile.ZipFile] = {}
    try:
        for split in ("train", "test"):
            path = root / f"{split}.zip"
            try:
                archives[split] = zipfile.ZipFile(path)
            except (zipfile.BadZipFile, OSError) as e:
                raise DataError(f"{path}: not a readable zip file ({e})") from None
            by_class: dict[str, list[str]] = {}
            for name in archives[split].namelist():
                parts = name.split("/")
                if len(parts) == 3 and parts[0] == split and parts[1] and _is_image(name):
                    by_class.setdefault(parts[1], []).append(name)
            if not by_class:
                raise DataError(f"{path}: no image members named {split}/<class>/<image>")
            members[split] = by_class
        classes = _check_classes(str(root), set(members["train"]), set(members["test"]))
        arrays = []
        first: _First = None
        for split in ("train", "test"):
            names, labels = _gather(members[split], classes, opts.limit)
            archive = archives[split]
            zip_path = root / f"{split}.zip"

            def opener(name: str, archive: zipfile.ZipFile = archive) -> IO[bytes]:
                return io.BytesIO(archive.read(name))

            x, first = _decode(names, opener, lambda n, p=zip_path: f"{p}:{n}", opts.image_size, first)
            arrays.append((x, labels))
    finally:
        for archive in archives.values():
            archive.close()
    return _from_arrays(root.name, arrays[0], arrays[1], classes, opts, decoded=True)


def _gather(by_class: dict[str, list[str]], classes: Sequence[str], limit: int | None) -> tuple[list[str], np.ndarray]:
    """Flatten {class: names} into sorted names per class (first ``limit`` each) and their labels."""
    names: list[str] = []
    labels: list[int] = []
    for label, cls in enumerate(classes):
        chosen = sorted(by_class[cls])[:limit]
        names.extend(chosen)
        labels.extend([label] * len(chosen))
    return names, np.asarray(labels, dtype=np.int64)


def _class_images(folder: Path) -> dict[str, list[str]]:
    """{class: image paths} for the class sub-folders of ``folder``; errors for none / an empty class."""
    class_dirs = [p for p in _visible(folder) if p.is_dir()]
    if not class_dirs:
        raise DataError(f"{folder}: no class folders (expected one sub-folder per class)")
    found: dict[str, list[str]] = {}
    for d in class_dirs:
        files = [str(d / e.name) for e in os.scandir(d) if e.is_file() and _is_image(e.name)]
        if not files:
            raise DataError(f"{d}: class folder has no images ({'/'.join(IMAGE_SUFFIXES)})")
        found[d.name] = files
    return found


def _load_folder(root: Path, opts: _Options) -> ImageDataset:
    subdirs = {p.name for p in _visible(root) if p.is_dir()}
    if "train" in subdirs or "test" in subdirs:
        have, lack = ("train", "test") if "train" in subdirs else ("test", "train")
        if lack not in subdirs:
            raise DataError(f"{root}: has a {have}/ folder but no {lack}/ folder (split layout needs both)")
        train_files, test_files = _class_images(root / "train"), _class_images(root / "test")
        classes = _check_classes(str(root), set(train_files), set(test_files))
        arrays = []
        first: _First = None
        for files in (train_files, test_files):
            names, labels = _gather(files, classes, opts.limit)
            x, first = _decode(names, lambda n: n, lambda n: n, opts.image_size, first)
            arrays.append((x, labels))
        return _from_arrays(root.name, arrays[0], arrays[1], classes, opts, decoded=True)

    files = _class_images(root)
    if len(files) < 2:
        raise DataError(f"{root}: found 1 class ({sorted(files)}); need at least 2")
    classes = _class_order(sorted(files))
    names, y = _gather(files, classes, opts.limit)
    x, _ = _decode(names, lambda n: n, lambda n: n, opts.image_size, None)
    train, test = _stratified_split(y, opts.test_fraction, opts.seed, str(root))
    return _from_arrays(root.name, (x[train], y[train]), (x[test], y[test]), classes, opts, decoded=True)


_First = tuple[str, tuple[int, int]] | None  # (display name, (W, H)) of the first decoded image


def _decode(
    names: Sequence[str],
    opener: Callable[[str], Any],
    display: Callable[[str], str],
    image_size: int | None,
    first: _First,
) -> tuple[np.ndarray, _First]:
    """Decode images into one preallocated uint8 (N, C, H, W) array in a single pass.

    Grayscale images give C=1 if every image is grayscale, else everything is RGB (``_from_arrays``
    reconciles splits). Without ``image_size`` all images must share one size, also with ``first`` (the first
    image of an earlier split, as returned with the array).
    """
    from PIL import Image  # local import: keeps `import enas.data.images` light

    n = len(names)
    out: np.ndarray | None = None
    all_gray = True
    start = time.perf_counter()
    for i, name in enumerate(names):
        try:
            with Image.open(opener(name)) as im:
                gray = im.mode in _GRAY_MODES
                img = im.convert("L" if gray else "RGB")
            if image_size is not None and img.size != (image_size, image_size):
                img = img.resize((image_size, image_size), Image.BILINEAR)
            arr = np.asarray(img)
        except DataError:
            raise
        except Exception as e:  # any decoder failure is a data problem with this file
            raise DataError(f"{display(name)}: cannot read image ({type(e).__name__}: {e})") from None
        size = (arr.shape[1], arr.shape[0])  # (W, H), as PIL reports it
        if first is None:
            first = (display(name), size)
        if size != first[1]:
            raise DataError(
                f"images differ in size: {first[0]} is {first[1][0]}x{first[1][1]} but {display(name)} is "
                f"{size[0]}x{size[1]}; pass image_size to resize them all"
            )
        if out is None:
            out = np.empty((n, 3, size[1], size[0]), dtype=np.uint8)
        if gray:
            out[i] = arr[None]
        else:
            out[i] = arr.transpose(2, 0, 1)
            all_gray = False
        if (i + 1) % _PROGRESS_EVERY == 0:
            log.info("decoded %d/%d images (%.1fs)", i + 1, n, time.perf_counter() - start)
    assert out is not None and first is not None  # callers never pass an empty list
    return (out[:, :1].copy() if all_gray else out), first


# ----------------------------------------------------------------------------------------------------- helpers


def _first_k_per_class(y: np.ndarray, k: int) -> np.ndarray:
    """Indices (ascending) of the first ``k`` items of every class."""
    keep = [np.flatnonzero(y == c)[:k] for c in np.unique(y)]
    return np.sort(np.concatenate(keep)) if keep else np.zeros(0, dtype=np.int64)


def _stratified_split(y: np.ndarray, test_fraction: float, seed: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split: per class, round(test_fraction * n) test items (at least 1 if n >= 2)."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test = min(max(int(round(test_fraction * idx.size)), 1), idx.size - 1) if idx.size >= 2 else 0
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    test_idx, train_idx = np.sort(np.concatenate(test)), np.sort(np.concatenate(train))
    if test_idx.size == 0:
        raise DataError(f"{where}: too few images to split off a test set (test_fraction={test_fraction})")
    return train_idx, test_idx


def _resize(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 (N, C, H, W) to size x size with antialiased bilinear interpolation, in chunks."""
    if tuple(x.shape[2:]) == (size, size):
        return x
    chunks = [
        torch.nn.functional.interpolate(
            x[i : i + _CHUNK].float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
        .round_()
        .clamp_(0, 255)
        .to(torch.uint8)
        for i in range(0, x.shape[0], _CHUNK)
    ]
    return torch.cat(chunks) if chunks else x.new_zeros((0, x.shape[1], size, size))


def _from_arrays(
    name: str,
    train: tuple[np.ndarray, np.ndarray],
    test: tuple[np.ndarray, np.ndarray],
    classes: tuple[str, ...],
    opts: _Options,
    *,
    decoded: bool = False,
) -> ImageDataset:
    """Build the dataset; for array sources (not ``decoded`` from files) apply ``limit_per_class`` here."""
    (train_x, train_y), (test_x, test_y) = train, test
    if train_x.shape[1] != test_x.shape[1]:  # one split all grayscale, the other with colour: make both RGB
        train_x, test_x = (np.repeat(a, 3, axis=1) if a.shape[1] == 1 else a for a in (train_x, test_x))
    if opts.limit is not None and not decoded:
        keep_train, keep_test = _first_k_per_class(train_y, opts.limit), _first_k_per_class(test_y, opts.limit)
        train_x, train_y = train_x[keep_train], train_y[keep_train]
        test_x, test_y = test_x[keep_test], test_y[keep_test]
    tensors = [torch.from_numpy(np.ascontiguousarray(a)) for a in (train_x, train_y, test_x, test_y)]
    return _finish(name, *tensors, classes, opts, decoded=decoded)


def _finish(
    name: str,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    classes: tuple[str, ...],
    opts: _Options,
    *,
    decoded: bool = False,
) -> ImageDataset:
    if opts.image_size is not None and not decoded:
        train_x, test_x = _resize(train_x, opts.image_size), _resize(test_x, opts.image_size)
    return ImageDataset(name, train_x.contiguous(), train_y.long(), test_x.contiguous(), test_y.long(), classes)


# ------------------------------------------------------------------------------------------ splits and statistics


def split_validation(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    n_valid: int | float,
    generator: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Carve a validation set out of the training set with a seeded permutation.

    ``n_valid`` is a count (int >= 1) or a fraction in (0, 1). Both parts keep their original order.
    Returns ``(train_x, train_y, valid_x, valid_y)``.
    """
    n = int(train_x.shape[0])
    if train_y.shape[0] != n:
        raise DataError(f"split_validation: {n} images but {train_y.shape[0]} labels")
    if isinstance(n_valid, bool) or not isinstance(n_valid, (int, float)):
        raise DataError(f"n_valid: must be an int or a fraction, got {n_valid!r}")
    if isinstance(n_valid, float):
        if not 0.0 < n_valid < 1.0:
            raise DataError(f"n_valid: a fraction must be in (0, 1), got {n_valid}")
        count = int(round(n_valid * n))
    else:
        count = n_valid
    if not 0 < count < n:
        raise DataError(f"n_valid: {n_valid} of {n} training images would leave an empty train or validation part")
    perm = torch.randperm(n, generator=generator, device=generator.device).to(train_x.device)
    valid_idx, train_idx = perm[:count].sort().values, perm[count:].sort().values
    return train_x[train_idx], train_y[train_idx], train_x[valid_idx], train_y[valid_idx]


def channel_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and (population) std of uint8 (N, C, H, W) images, in the [0, 1] scale; float32 (C,)."""
    if x.dim() != 4 or x.shape[0] == 0:
        raise DataError(f"channel_stats: expected a non-empty (N, C, H, W) tensor, got {tuple(x.shape)}")
    count = x.shape[0] * x.shape[2] * x.shape[3]
    chunks = range(0, x.shape[0], _CHUNK)
    total = sum(x[i : i + _CHUNK].double().sum(dim=(0, 2, 3)) for i in chunks)
    mean = total / (255.0 * count)  # (C,)
    centred = mean.reshape(1, -1, 1, 1)
    squares = sum((x[i : i + _CHUNK].double() / 255.0 - centred).square_().sum(dim=(0, 2, 3)) for i in chunks)
    std = (squares / count).sqrt()  # two passes: no cancellation for near-constant channels
    return mean.float(), std.float()
