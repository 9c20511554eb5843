"""Ground-truth tables of architecture benchmarks, read as plain data (no torch).

``nb201``: NAS-Bench-201 / NATS-Bench topology space, the 200-epoch test accuracy of all 15,625 cells on
CIFAR-10, CIFAR-100 and ImageNet16-120 (``load_table``, ``lookup``, ``ground_truth_summary``).

``has_table(space)`` and ``table_for(space, path)`` are what the rest of the package asks: a space has a
benchmark when its name is a key of ``BENCHMARKS``.
"""

from __future__ import annotations

import importlib

from .nb201 import BenchmarkError  # noqa: F401  (one error type for every benchmark)

BENCHMARKS = {"nb201": "enas.benchmarks.nb201"}  # space name -> module with load_table(path)


def has_table(space: str) -> bool:
    return space in BENCHMARKS


def table_for(space: str, path: str | None = None):
    """The ground-truth table of ``space`` (``path``: its file or folder; None: the benchmark's default places).
    Raises BenchmarkError (one line) when the space has none or the file is not found."""
    if space not in BENCHMARKS:
        raise BenchmarkError(f"the {space} space has no ground-truth table (those that do: {', '.join(BENCHMARKS)})")
    return importlib.import_module(BENCHMARKS[space]).load_table(path)
