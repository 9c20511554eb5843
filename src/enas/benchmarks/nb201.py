"""NAS-Bench-201 ground truth: the 200-epoch test accuracy of every cell of the ``nb201`` space.

The table (``nats_tss_200ep.csv``, 15,625 rows, accuracies in percent; see ``PROVENANCE.md`` next to it) is
not part of the project. It is found by ``resolve_path``: an explicit path (the csv or its directory), else
``$ENAS_NB201``, else ``../shared/data/nas-bench-201`` relative to the current directory, else the same
relative to the repository that holds this file. ``load_table`` reads and checks it once per path; a ``Table``
answers accuracies, ranks (1 = best) and percentiles (share of cells strictly worse) with precomputed sorted
arrays, so thousands of queries cost little. Cells are given as ``NB201Arch``, as the benchmark's string (any
whitespace, edges in any order within a node) or as op indices ("3 3 3 1 3 2").

Standard library only: no torch here.
"""

from __future__ import annotations

import csv
import functools
import io
import math
import os
import re
from bisect import bisect_left, bisect_right
from pathlib import Path

from ..errors import EnasError
from ..spaces import nb201
from ..spaces.base import ArchError

DATASETS = ("cifar10", "cifar100", "imagenet16")
COLUMNS = {
    "cifar10": "CIFAR10TestAccuracy200Epochs",
    "cifar100": "CIFAR100TestAccuracy200Epochs",
    "imagenet16": "ImageNetTestAccuracy200Epochs",
}
STRING_COLUMN = "ArchitectureString"
UNIQUE_COLUMN = "UniqueString"
FILENAME = "nats_tss_200ep.csv"
ENV_VAR = "ENAS_NB201"
DEFAULT_DIR = Path("..") / "shared" / "data" / "nas-bench-201"
NUM_CELLS = len(nb201.OPS) ** len(nb201.EDGES)  # 15,625
MAX_BYTES = 50 * 1024 * 1024
SPACE = nb201.NB201Space()

_ALIASES = {"imagenet": "imagenet16", "imagenet16-120": "imagenet16", "imagenet16_120": "imagenet16"}
_OP = "|".join(re.escape(op) for op in nb201.OPS)
# The canonical 4-node string, matched without a full parse (loading checks 15,625 of them).
_CANONICAL = re.compile(r"\|({o})~0\|\+\|({o})~0\|({o})~1\|\+\|({o})~0\|({o})~1\|({o})~2\|".format(o=_OP))


class BenchmarkError(EnasError):
    """The benchmark table is missing or unreadable, or a cell or dataset is not in it (one-line message)."""


def resolve_path(path: str | os.PathLike | None = None) -> Path:
    """The csv file: ``path`` (the file or its directory) > ``$ENAS_NB201`` > the default locations.

    An explicit ``path`` or a set ``$ENAS_NB201`` is the only place tried: a wrong one is an error, never a
    silent fall back to another copy.
    """
    if path is not None and str(path) != "":
        tried = [Path(path)]
    elif os.environ.get(ENV_VAR):
        tried = [Path(os.environ[ENV_VAR])]
    else:
        tried = [Path.cwd() / DEFAULT_DIR, Path(__file__).resolve().parents[3] / DEFAULT_DIR]
    for p in tried:
        try:
            f = p / FILENAME if p.is_dir() else p
            if f.is_file():
                return f.resolve()
        except (OSError, ValueError):  # unreadable directory, NUL byte in the name
            continue
    shown = ", ".join(_show(p) for p in tried)
    raise BenchmarkError(f"NAS-Bench-201 table not found: pass --nb201 PATH or set {ENV_VAR} (tried: {shown})")


def _show(p: Path) -> str:
    return repr(os.path.normpath(os.path.abspath(p)))[1:-1]  # repr: a newline in a name stays on one line


def dataset_name(dataset: str) -> str:
    key = _ALIASES.get(str(dataset).lower(), str(dataset).lower())
    if key not in DATASETS:
        raise BenchmarkError(f"NAS-Bench-201: unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    return key


class Table:
    """The benchmark's rows, in file order, with lookups by cell and precomputed per-dataset sorted accuracies."""

    def __init__(self, strings: list[str], unique: list[str], accuracies: dict[str, list[float]],
                 path: Path | None = None):
        self.path = path
        self.strings: tuple[str, ...] = tuple(strings)
        self._unique = tuple(unique)
        self._acc = {d: tuple(accuracies[d]) for d in DATASETS}
        if any(len(v) != len(self.strings) for v in self._acc.values()) or len(self._unique) != len(self.strings):
            raise BenchmarkError("NAS-Bench-201 table: columns of different lengths")
        self._index = {s: i for i, s in enumerate(self.strings)}
        if len(self._index) != len(self.strings):
            raise BenchmarkError("NAS-Bench-201 table: a cell string appears twice")
        self._sorted = {d: sorted(v) for d, v in self._acc.items()}
        self._best = {d: max(range(len(v)), key=v.__getitem__) if v else None for d, v in self._acc.items()}

    def __len__(self) -> int:
        return len(self.strings)

    def __repr__(self) -> str:
        return f"Table({len(self)} cells, path={str(self.path)!r})"

    def __contains__(self, arch: object) -> bool:
        try:
            self.index(arch)
        except BenchmarkError:
            return False
        return True

    def index(self, arch_or_string: object) -> int:
        """The row of a cell: an ``NB201Arch``, a cell string (or op indices) or an architecture dict."""
        if isinstance(arch_or_string, str):
            i = self._index.get(arch_or_string)
            if i is None:
                i = self._index.get(arch_or_string.strip())
            if i is not None:
                return i
        key = self.string_of(arch_or_string)
        i = self._index.get(key)
        if i is None:
            raise BenchmarkError(f"NAS-Bench-201: cell {key} is not in the table")
        return i

    @staticmethod
    def string_of(arch_or_string: object) -> str:
        """The benchmark's canonical string of a cell given in any accepted form."""
        try:
            if isinstance(arch_or_string, nb201.NB201Arch):
                arch = arch_or_string
                errors = nb201.validate(arch, SPACE)
                if errors:
                    raise ArchError(errors)
            elif isinstance(arch_or_string, str):
                arch = nb201.from_enas_string(arch_or_string, SPACE)
            elif isinstance(arch_or_string, dict):
                arch = nb201.from_dict(arch_or_string, SPACE)
            else:
                raise ArchError(f"expected an NB201Arch or a cell string, got {type(arch_or_string).__name__}")
        except ArchError as e:
            raise BenchmarkError(f"NAS-Bench-201: not a cell of the benchmark: {e}") from e
        return nb201.benchmark_string(arch)

    def accuracy(self, arch_or_string: object, dataset: str = "cifar10") -> float:
        """Test accuracy in percent after 200 epochs."""
        return self._acc[dataset_name(dataset)][self.index(arch_or_string)]

    def lookup(self, arch_or_string: object) -> dict[str, float]:
        i = self.index(arch_or_string)
        return {d: self._acc[d][i] for d in DATASETS}

    def rank(self, arch_or_string: object, dataset: str = "cifar10") -> int:
        """1 + the number of cells strictly better (ties share a rank)."""
        d = dataset_name(dataset)
        acc = self._acc[d][self.index(arch_or_string)]
        return 1 + len(self) - bisect_right(self._sorted[d], acc)

    def percentile(self, arch_or_string: object, dataset: str = "cifar10") -> float:
        """The share of cells strictly worse, in percent (the best cell: 99.99...)."""
        d = dataset_name(dataset)
        acc = self._acc[d][self.index(arch_or_string)]
        return 100.0 * bisect_left(self._sorted[d], acc) / len(self)

    def best(self, dataset: str = "cifar10") -> tuple[str, float]:
        """The best cell (the first in file order among equals) and its accuracy."""
        d = dataset_name(dataset)
        i = self._best[d]
        if i is None:
            raise BenchmarkError("NAS-Bench-201 table: empty")
        return self.strings[i], self._acc[d][i]

    def accuracies(self, dataset: str = "cifar10") -> list[float]:
        """Every cell's accuracy, in file order (aligned with ``strings``)."""
        return list(self._acc[dataset_name(dataset)])

    def summary(self, arch_or_string: object) -> dict:
        """What a run records of a cell: its accuracy, rank and percentile on every dataset, and its string."""
        i = self.index(arch_or_string)
        s = self.strings[i]
        out: dict = {d: self._acc[d][i] for d in DATASETS}
        for d in DATASETS:
            out[f"{d}_rank"] = self.rank(s, d)
            out[f"{d}_percentile"] = round(self.percentile(s, d), 4)
        out.update(of=len(self), string=s, best={d: self.best(d)[1] for d in DATASETS})
        return out

    def unique_string(self, arch_or_string: object) -> str:
        """The benchmark's isomorphism-class string (cells with equal ones compute the same function)."""
        return self._unique[self.index(arch_or_string)]


def _canonical(text: str) -> str:
    if _CANONICAL.fullmatch(text):
        return text
    return nb201.benchmark_string(nb201.from_enas_string(text, SPACE))


def read_table(path: Path) -> Table:
    """Read and check the csv at ``path`` (no search, no cache). Raises BenchmarkError with one line."""
    where = f"NAS-Bench-201 table {_show(path)}"
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise BenchmarkError(f"{where}: {size / 1e6:.0f} MB, over the {MAX_BYTES // 2**20} MB limit "
                                 f"(the table is about 3 MB)")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise BenchmarkError(f"{where}: cannot read ({e.__class__.__name__})") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader, [])]
        if not header:
            raise BenchmarkError(f"{where}: empty file")
        need = [*COLUMNS.values(), STRING_COLUMN, UNIQUE_COLUMN]
        missing = [c for c in need if c not in header]
        if missing:
            raise BenchmarkError(f"{where}: missing column{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
        col = {c: header.index(c) for c in need}
        strings: list[str] = []
        unique: list[str] = []
        accs: dict[str, list[float]] = {d: [] for d in DATASETS}
        seen: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            if not row or all(not f.strip() for f in row):
                continue
            if len(row) != len(header):
                raise BenchmarkError(f"{where}: line {line}: expected {len(header)} fields, got {len(row)}")
            for d, c in COLUMNS.items():
                try:
                    v = float(row[col[c]])
                except ValueError:
                    raise BenchmarkError(f"{where}: line {line}: {c} {row[col[c]]!r} is not a number") from None
                if not (math.isfinite(v) and 0.0 <= v <= 100.0):
                    raise BenchmarkError(f"{where}: line {line}: {c} {v!r} is not a percentage")
                accs[d].append(v)
            try:
                s = _canonical(row[col[STRING_COLUMN]].strip())
            except ArchError as e:
                raise BenchmarkError(f"{where}: line {line}: bad cell string ({e.errors[0]})") from None
            if s in seen:
                raise BenchmarkError(f"{where}: line {line}: cell {s} already on line {seen[s]}")
            seen[s] = line
            strings.append(s)
            unique.append(row[col[UNIQUE_COLUMN]].strip())
    except csv.Error as e:
        raise BenchmarkError(f"{where}: not a valid csv file ({e})") from None
    if len(strings) != NUM_CELLS:
        raise BenchmarkError(f"{where}: {len(strings)} cells, expected {NUM_CELLS} (truncated or not the "
                             f"NAS-Bench-201 table?)")
    return Table(strings, unique, accs, path)


@functools.lru_cache(maxsize=8)
def _load_cached(path: str) -> Table:
    return read_table(Path(path))


def load_table(path: str | os.PathLike | None = None) -> Table:
    """The table at ``resolve_path(path)``, read once per resolved path."""
    return _load_cached(str(resolve_path(path)))


def lookup(arch: object, dataset: str = "cifar10", path: str | os.PathLike | None = None) -> float:
    """A cell's 200-epoch test accuracy (percent) on ``dataset``."""
    return load_table(path).accuracy(arch, dataset)


def ground_truth_summary(arch: object, table: Table | None = None) -> dict:
    """What ``result.json`` records of a cell (``Table.summary``: accuracies, ranks and percentiles on every
    dataset, the benchmark's best, the string), from the default table unless one is given."""
    return (load_table() if table is None else table).summary(arch)
