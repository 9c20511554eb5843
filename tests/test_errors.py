"""One error base (#19 item 4): every error enas raises for bad input derives from ``enas.EnasError``, keeps the
builtin base scripts already catch, and reaches the command line as one line with the class's exit code."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import enas
from enas import cli
from enas.errors import EnasError

# the builtin base each error had before EnasError existed: ``except ValueError`` in a user's script still works
BUILTIN_BASE = {"ConfigError": ValueError, "ArchError": ValueError, "DataError": ValueError,
                "TextDataError": ValueError, "RunDirError": ValueError, "RunInUse": ValueError,
                "VizError": ValueError, "ReportError": ValueError, "ExportError": ValueError,
                "CheckpointError": RuntimeError, "NonFiniteError": RuntimeError}


def _error_classes() -> dict[str, type]:
    found = {}
    for info in pkgutil.walk_packages(enas.__path__, "enas."):
        if info.name in ("enas.ray_engine", "enas.__main__"):
            continue  # ray_engine imports ray lazily, but keep the walk free of optional extras
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if (inspect.isclass(obj) and issubclass(obj, Exception) and obj.__module__ == info.name
                    and name.endswith(("Error", "InUse"))):
                found[name] = obj
    return found


def test_every_error_class_derives_from_enas_error():
    classes = _error_classes()
    assert set(BUILTIN_BASE) <= set(classes)  # the walk sees them
    assert {n: c for n, c in classes.items() if not issubclass(c, EnasError)} == {}
    for name, base in BUILTIN_BASE.items():
        assert issubclass(classes[name], base), name
    assert enas.EnasError is EnasError


@pytest.mark.parametrize("name", sorted(BUILTIN_BASE))
def test_cli_prints_one_line_and_the_class_exit_code(name, capsys):
    cls = _error_classes()[name]
    err = cls.__new__(cls)
    Exception.__init__(err, "first part\nsecond part")
    code = cli._report(err)
    out = capsys.readouterr().err
    assert out == "error: first part second part\n"
    assert code == cls.exit_code == (1 if name == "NonFiniteError" else cli.EXIT_USAGE)


def test_a_users_subclass_is_reported_like_ours(capsys, monkeypatch, tmp_path):
    import tempfile
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the internal error's traceback file goes here
    class MyStepRefused(EnasError):
        exit_code = 3

    assert cli._report(MyStepRefused("my hook refused the step")) == 3
    assert capsys.readouterr().err == "error: my hook refused the step\n"
    assert cli._report(KeyError("x")) == 1  # not ours: an internal error, reported with a traceback file
    assert "internal error" in capsys.readouterr().err
    assert len(list(tmp_path.glob("enas-traceback-*.txt"))) == 1
