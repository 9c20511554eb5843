"""Bad input at every boundary (architectures, integer strings, config files, overrides, datasets, flags):
one line on stderr that starts with "error:" and names the field, exit code 2, no traceback, and no file of an
existing run directory (or anywhere else) changed. Plus a property test: random architecture JSON either
validates or is rejected with ArchError, never anything else."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enas import archio, cli
from enas.spaces import macro as MA
from enas.spaces import micro as MI
from enas.spaces.base import ArchError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--preset", "tiny"]

GOOD_MICRO = {"space": "micro", "format": 1,
              "normal": [[0, "identity", 1, "sep_conv_3x3"], [0, "avg_pool_3x3", 2, "identity"]],
              "reduce": [[1, "identity", 0, "identity"], [2, "sep_conv_5x5", 0, "max_pool_3x3"]]}


def _micro(**change) -> dict:
    d = copy.deepcopy(GOOD_MICRO)
    for k, v in change.items():
        if v is None:
            del d[k]
        else:
            d[k] = v
    return d


def _nodes(cell: str, i: int, j: int, value) -> dict:
    d = copy.deepcopy(GOOD_MICRO)
    d[cell][i][j] = value
    return d


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def existing_run(tmp_path_factory) -> Path:
    """A real (tiny) search run directory, made once; no failed command may change any file in it."""
    cwd = tmp_path_factory.mktemp("existing")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""),
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("ENAS_TEST_CRASH_AT", None)
    r = subprocess.run([sys.executable, "-m", "enas", "search", *TINY, "--out", "run", "--quiet"], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return cwd / "run"


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    """Bad (and a few good) input files: architectures, configs, datasets."""
    from PIL import Image

    d = tmp_path_factory.mktemp("inputs")

    def w(name: str, obj) -> None:
        (d / name).write_text(obj if isinstance(obj, str) else json.dumps(obj))

    w("good.json", GOOD_MICRO)
    w("other.json", _nodes("normal", 0, 1, "max_pool_3x3"))
    w("bad_op.json", _nodes("normal", 0, 1, "conv_9x9"))
    w("bad_input.json", _nodes("reduce", 1, 2, 7))
    w("neg_input.json", _nodes("normal", 1, 0, -1))
    w("input_type.json", _nodes("normal", 0, 0, "zero"))
    w("node_shape.json", _micro(normal=[[0, "identity", 1]] + GOOD_MICRO["normal"][1:]))
    w("node_count.json", _micro(reduce=GOOD_MICRO["reduce"] + [[0, "identity", 1, "identity"]]))
    w("space_macro.json", _micro(space="macro"))
    w("space_bogus.json", _micro(space="transformer"))
    w("no_format.json", _micro(format=None))
    w("format_2.json", _micro(format=2))
    w("not_json.json", '{"space": "micro", "normal": [')
    w("unknown_field.json", _micro(extra_field=1))
    w("cell_type.json", _micro(normal="0 identity 1 identity"))
    w("array.json", '["micro"]')
    w("macro_bits.json", {"space": "macro", "format": 1, "layers": [{"op": "conv_3x3", "skips": []},
                                                                     {"op": "conv_3x3", "skips": [2]},
                                                                     {"op": "conv_3x3", "skips": [0, 1]}]})
    w("int_string.txt", "0 1 0 1 x")
    w("cfg_invalid.json", '{"shared": {"epochs": 2,}}')
    w("cfg_section.json", {"optimizer": {"lr": 0.1}})
    w("cfg_key.json", {"shared": {"learning_rate": 0.1}})
    w("cfg_type.json", {"shared": {"epochs": "many"}})
    w("cfg_list.json", [{"shared": {}}])
    w("cfg_range.json", {"net": {"keep_prob": 1.5}})
    w("cfg_space.json", {"space": "vit"})
    (d / "empty_dir").mkdir()
    (d / "not_a_run").mkdir()
    (d / "not_a_run" / "notes.txt").write_text("hello")
    (d / "a_file.txt").write_text("not a dataset")
    img = np.zeros((8, 8, 3), np.uint8)
    (d / "one_class" / "cat").mkdir(parents=True)
    for i in range(4):
        Image.fromarray(img).save(d / "one_class" / "cat" / f"{i}.png")
    for c in ("cat", "dog"):
        (d / "corrupt" / c).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(img + i).save(d / "corrupt" / c / f"{i}.png")
    (d / "corrupt" / "dog" / "9.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (d / "empty_out").mkdir()  # an empty --out directory: a failed run must leave it empty
    return d


# ------------------------------------------------------------------------------------------------ cases
# (id, argv, a distinctive part of the one-line message); {in} = inputs dir, {run} = the existing run,
# {new} = a directory that must not be created. Exit code 2 throughout.
CASES = [
    # architectures (JSON)
    ("arch-bad-op", ["train", "{in}/bad_op.json", *TINY, "--out", "{new}"], "normal.node2.x: unknown op 'conv_9x9'"),
    ("arch-bad-input", ["train", "{in}/bad_input.json", *TINY, "--out", "{new}"],
     "reduce.node3.y: input must be an integer in [0, 2], got 7"),
    ("arch-negative-input", ["show", "{in}/neg_input.json", *TINY], "normal.node3.x: input must be an integer"),
    ("arch-input-type", ["show", "{in}/input_type.json", *TINY], "input must be an integer in [0, 1], got 'zero'"),
    ("arch-node-shape", ["show", "{in}/node_shape.json", *TINY],
     "normal.node2: expected [input, op_name, input, op_name]"),
    ("arch-node-count", ["train", "{in}/node_count.json", *TINY, "--out", "{new}"], "reduce: expected 2 nodes, got 3"),
    ("arch-space-other", ["show", "{in}/space_macro.json", *TINY], "architecture is for the 'macro' space"),
    ("arch-space-bogus", ["show", "{in}/space_bogus.json", *TINY], "space: expected 'micro', got 'transformer'"),
    ("arch-missing-format", ["show", "{in}/no_format.json", *TINY], "format: expected 1, got None"),
    ("arch-format-2", ["show", "{in}/format_2.json", *TINY], "format: expected 1, got 2"),
    ("arch-not-json", ["train", "{in}/not_json.json", *TINY, "--out", "{new}"], "architecture JSON: invalid at line 1"),
    ("arch-unknown-field", ["show", "{in}/unknown_field.json", *TINY], "unknown fields: extra_field"),
    ("arch-cell-type", ["show", "{in}/cell_type.json", *TINY], "normal: expected a list of [input, op, input, op]"),
    ("arch-missing-file", ["train", "{in}/nothing.json", *TINY, "--out", "{new}"], "nothing.json: not found"),
    ("arch-dir-without-arch", ["show", "{in}/empty_dir", *TINY], "without best_arch.json or arch.json"),
    ("arch-empty", ["show", "", *TINY], "architecture: empty"),
    ("arch-json-array", ["show", "{in}/array.json", *TINY], "integer string: '\"micro\"' is not an integer"),
    ("arch-macro-bits", ["show", "{in}/macro_bits.json", "--space", "macro", *TINY],
     "layer1.skips: bits must be 0 or 1, got 2"),
    # integer strings
    ("ints-length", ["train", "0 1 0 1", *TINY, "--out", "{new}"], "integer string: expected 16 integers"),
    ("ints-not-integer", ["show", "0 1 0 1 0 1 0 1 0 1 0 1 0 1 0 x", *TINY], "integer string: 'x' is not an integer"),
    ("ints-file-not-integer", ["show", "{in}/int_string.txt", *TINY], "'x' is not an integer"),
    ("ints-op-range", ["show", "0 9 1 0 0 1 2 0 1 0 0 0 2 1 0 3", *TINY],
     "normal.node2.x: op index 9 out of range [0, 4]"),
    ("ints-input-range", ["train", "0 1 5 0 0 1 2 0 1 0 0 0 2 1 0 3", *TINY, "--out", "{new}"],
     "normal.node2.y: input must be an integer in [0, 1], got 5"),
    ("ints-macro-length", ["show", "0 1 0 1", "--space", "macro", *TINY], "expected 6 integers for 3 layers"),
    ("ints-macro-op", ["show", "0 7 0 1 0 0", "--space", "macro", *TINY], "layer1.op: op index 7 out of range"),
    # config files
    ("cfg-missing", ["search", *TINY, "--config", "{in}/nope.json", "--out", "{new}"],
     "config file {in}/nope.json: not found"),
    ("cfg-invalid-json", ["search", *TINY, "--config", "{in}/cfg_invalid.json"],
     "cfg_invalid.json: invalid JSON at line 1"),
    ("cfg-unknown-section", ["search", *TINY, "--config", "{in}/cfg_section.json"], "unknown section 'optimizer'"),
    ("cfg-unknown-key", ["search", *TINY, "--config", "{in}/cfg_key.json"], "shared.learning_rate: unknown setting"),
    ("cfg-wrong-type", ["search", *TINY, "--config", "{in}/cfg_type.json", "--out", "{new}"],
     "shared.epochs: expected an integer, got 'many'"),
    ("cfg-not-object", ["search", *TINY, "--config", "{in}/cfg_list.json"], "expected an object of sections"),
    ("cfg-out-of-range", ["train", "{in}/good.json", *TINY, "--config", "{in}/cfg_range.json"],
     "net.keep_prob: must be in (0, 1], got 1.5"),
    ("cfg-bad-space", ["search", *TINY, "--config", "{in}/cfg_space.json"], "space: unknown search space 'vit'"),
    ("cfg-is-dir", ["search", *TINY, "--config", "{in}/empty_dir"], "cannot read (IsADirectoryError)"),
    # overrides
    ("ovr-no-equals", ["search", *TINY, "shared.epochs"], "override 'shared.epochs': expected section.key=value"),
    ("ovr-no-section", ["search", *TINY, "epochs=3"], "override 'epochs=3': expected section.key=value"),
    ("ovr-unknown-section", ["search", *TINY, "optim.lr=0.1", "--out", "{new}"], "unknown section 'optim'"),
    ("ovr-unknown-key", ["search", *TINY, "shared.lr=0.1"], "shared.lr: unknown setting"),
    ("ovr-bad-number", ["search", *TINY, "shared.lr_max=fast"], "shared.lr_max: expected a number, got 'fast'"),
    ("ovr-nan", ["search", *TINY, "shared.lr_max=nan"], "shared.lr_max: expected a finite number"),
    ("ovr-bad-int", ["search", *TINY, "shared.batch_size=1.5"], "shared.batch_size: expected an integer, got '1.5'"),
    ("ovr-bad-bool", ["search", *TINY, "data.flip=maybe"], "data.flip: expected true or false, got 'maybe'"),
    ("ovr-negative-epochs", ["search", *TINY, "shared.epochs=-1", "--out", "{new}"],
     "shared.epochs: must be >= 0, got -1"),
    ("flag-negative-epochs", ["train", "{in}/good.json", *TINY, "--epochs", "-3"], "--epochs: must be >= 0, got -3"),
    ("ovr-bad-enum", ["search", *TINY, "controller.kind=genetic"],
     "controller.kind: expected enas or random, got 'genetic'"),
    ("ovr-bad-schedule", ["search", *TINY, "shared.lr_schedule=step"],
     "shared.lr_schedule: expected cosine, exp or constant"),
    ("ovr-bad-device", ["search", *TINY, "run.device=tpu"],
     "run.device: expected auto, cpu, cuda or cuda:N, got 'tpu'"),
    ("ovr-zero-log-every", ["train", "{in}/good.json", *TINY, "run.log_every=0"], "run.log_every: must be >= 1"),
    ("ovr-bad-compile", ["search", *TINY, "run.compile=max"], "run.compile: expected on or off, got 'max'"),
    ("ovr-bad-op-list", ["search", *TINY, "space_cfg.ops=conv_9x9,identity"], "unknown op 'conv_9x9'"),
    ("ovr-several-errors", ["search", *TINY, "shared.epochs=x", "run.seed=y"],
     "shared.epochs: expected an integer, got 'x'; run.seed: expected an integer, got 'y'"),
    # datasets (the run directory that a failed search/train created is removed again)
    ("data-missing", ["search", *TINY, "--data", "{in}/no_such_dataset", "--out", "{new}"],
     "no_such_dataset: path does not exist"),
    ("data-empty-dir", ["search", *TINY, "--data", "{in}/empty_dir", "--out", "{new}"],
     "empty_dir: directory is empty"),
    ("data-file", ["train", "{in}/good.json", *TINY, "--data", "{in}/a_file.txt", "--out", "{new}"],
     "a_file.txt: not a directory"),
    ("data-one-class", ["search", *TINY, "--data", "{in}/one_class", "--out", "{new}"],
     "found 1 class (['cat']); need at least 2"),
    ("data-corrupt-image", ["search", *TINY, "--data", "{in}/corrupt", "--out", "{new}"], "9.png: cannot read image"),
    ("data-corrupt-default-out", ["search", *TINY, "--data", "{in}/corrupt"], "9.png: cannot read image"),
    ("data-into-empty-out", ["train", "{in}/good.json", *TINY, "--data", "{in}/one_class", "--out", "{in}/empty_out"],
     "need at least 2"),
    ("data-not-downloaded", ["search", *TINY, "--data", "cifar10", "--out", "{new}"], "nothing is downloaded"),
    # flags
    ("flag-unknown", ["search", *TINY, "--bogus"], "unrecognized arguments: --bogus"),
    ("flag-unknown-verb", ["serch", *TINY], "invalid choice: 'serch'"),
    ("flag-bad-int", ["search", *TINY, "--epochs", "ten"], "argument --epochs: invalid int value: 'ten'"),
    ("flag-unknown-preset", ["search", "--preset", "huge"], "preset: unknown preset 'huge'"),
    ("flag-unknown-space", ["search", "--space", "vit"], "argument --space: invalid choice: 'vit'"),
    ("flag-bad-format", ["show", "{in}/good.json", *TINY, "--format", "gif"], "argument --format: invalid choice"),
    ("flag-cuda-absent", ["search", *TINY, "--device", "cuda:3", "--out", "{new}"],
     "run.device: cuda:3 requested but CUDA is not"),
    ("flag-out-existing-run", ["search", *TINY, "--out", "{run}"], "directory is not empty; pass --resume"),
    ("flag-out-existing-train", ["train", "{in}/good.json", *TINY, "--out", "{run}/final"], "directory is not empty"),
    ("flag-out-is-file", ["search", *TINY, "--out", "{run}/config.json"], "exists and is not a directory"),
    ("flag-resume-no-run", ["search", "--resume", "{in}/not_a_run"], "no run there (config.json missing)"),
    ("flag-resume-missing", ["search", "--resume", "{in}/gone"], "--resume {in}/gone: no such run directory"),
    ("flag-resume-and-out", ["search", "--resume", "{run}", "--out", "{new}"], "--resume and --out cannot be combined"),
    ("flag-resume-and-override", ["search", "--resume", "{run}", "shared.epochs=5"],
     "overrides cannot be combined with --resume"),
    ("flag-resume-and-preset", ["search", "--resume", "{run}", *TINY], "--preset cannot be combined with --resume"),
    ("flag-resume-and-epochs", ["train", "--resume", "{run}/final", "--epochs", "4"], "--epochs cannot be combined"),
    ("flag-resume-train-as-search", ["search", "--resume", "{run}/final"], "this is a training run; continue it with"),
    ("flag-resume-search-as-train", ["train", "--resume", "{run}"], "not a training run (arch.json missing)"),
    ("flag-resume-other-arch", ["train", "{in}/other.json", "--resume", "{run}/final"],
     "ARCH differs from the architecture"),
    ("flag-train-no-arch", ["train", *TINY, "--out", "{new}"], "required: arch"),
    # ranges and integers that used to pass the check and crash later, outputs that overwrote runs (issue #20)
    ("ovr-negative-weight-decay", ["search", *TINY, "shared.weight_decay=-1", "--out", "{new}"],
     "shared.weight_decay: must be >= 0, got -1.0"),
    ("ovr-channels-too-many", ["train", "{in}/good.json", *TINY, "final_net.channels=1000000", "--out", "{new}"],
     "final_net.channels: must be in [1, 4096], got 1000000"),
    ("ovr-int-other-digits", ["search", *TINY, "run.seed=\u0663"],
     "run.seed: expected an integer written with the digits 0-9, got '\u0663'"),
    ("ovr-int-underscore", ["train", "{in}/good.json", *TINY, "train.epochs=1_0", "shared.epochs=x"],
     "shared.epochs: expected an integer, got 'x'; train.epochs: expected an integer written with the digits"),
    ("flag-seed-plus", ["search", *TINY, "--seed", "+3"], "argument --seed: invalid int value: '+3'"),
    ("flag-export-into-a-run", ["export", "{run}", "--out", "{run}/final", "--format", "json"],
     "final: is a run directory; choose another --out"),
    ("flag-compare-into-a-run", ["compare", "--seeds", "0", *TINY, "--out", "{run}"], "is a run directory"),
    ("flag-show-onto-a-file", ["show", "{in}/good.json", *TINY, "--format", "svg", "-o", "{run}/result.json"],
     "result.json: exists; pass --force to replace it"),
]


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()} | \
        {str(p.relative_to(root)) + "/": "dir" for p in sorted(root.rglob("*")) if p.is_dir()}


def _fill(argv: list[str], **where: Path) -> list[str]:
    return [a.format(**{k: str(v) for k, v in where.items()}) for a in argv]


def test_enough_cases():
    kinds = {c[0].split("-")[0] for c in CASES}
    assert len(CASES) >= 30 and kinds == {"arch", "ints", "cfg", "ovr", "data", "flag"}
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case_id, argv, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case_id, argv, message, existing_run, inputs, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # default run directories (./runs/...) would land here
    monkeypatch.delenv("ENAS_DATA", raising=False)
    new = tmp_path / "new_run"
    where = {"in": inputs, "run": existing_run, "new": new}
    argv, message = _fill(argv, **where), message.format(**{k: str(v) for k, v in where.items()})
    before_run, before_inputs = _digest(existing_run), _digest(inputs)
    capsys.readouterr()
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    lines = err.splitlines()
    assert rc == 2, (rc, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert message in lines[0], lines[0]
    assert "Traceback" not in err + out
    assert _digest(existing_run) == before_run, "a file of the existing run directory changed"
    assert _digest(inputs) == before_inputs, "an input file or directory changed"
    assert list(tmp_path.iterdir()) == [], "the failed command left files behind"


SUBPROCESS_CASES = ["arch-bad-op", "cfg-unknown-key", "data-corrupt-image", "flag-out-existing-run",
                    "flag-resume-other-arch"]


@pytest.mark.parametrize("case_id", SUBPROCESS_CASES)
def test_bad_input_in_a_real_process(case_id, existing_run, inputs, tmp_path):
    """The same, through `python -m enas` (real exit status; logging configured as for a user)."""
    _, argv, message = next(c for c in CASES if c[0] == case_id)
    new = tmp_path / "new_run"
    where = {"in": inputs, "run": existing_run, "new": new}
    argv, message = _fill(argv, **where), message.format(**{k: str(v) for k, v in where.items()})
    before = _digest(existing_run)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1"}
    env.pop("ENAS_DATA", None)
    r = subprocess.run([sys.executable, "-m", "enas", *argv], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and r.stderr.startswith("error: ") and message in r.stderr, r.stderr
    assert _digest(existing_run) == before and list(tmp_path.iterdir()) == []


def test_existing_run_is_still_resumable_and_shows(existing_run, capsys):
    """After all the failures above, the run directory still reads: `show RUN_DIR` prints its architecture."""
    assert cli.main(["show", str(existing_run), *TINY]) == 0
    assert "normal cell" in capsys.readouterr().out


# ---------------------------------------------------------------------------------------- numerical faults
def test_nonfinite_steps_are_skipped_counted_and_stop_the_run(tmp_path):
    """A learning rate of 1e30 makes every loss after the first step non-finite: those steps are skipped
    and counted in the epoch row; the run stops after `run.max_nonfinite` in a row, with one error line,
    and the checkpoint on disk holds only finite weights."""
    import torch

    from enas import checkpoint

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "enas", "search", *TINY, "--out", "run", "--quiet",
                        "shared.lr_max=1e30", "run.max_nonfinite=8", "search.checkpoint_every=1"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "8 consecutive non-finite steps" in errors[0] and "shared.lr_max" in errors[0]
    assert "Traceback" not in r.stderr
    # read at every sync point (here a checkpoint per step): one warning per newly skipped step
    skipped = [int(m) for m in re.findall(r"^(\d+) non-finite step\(s\) skipped", r.stderr, re.M)]
    assert skipped == [1] * 8, r.stderr
    rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["nonfinite_steps"] == 7  # steps 2..8 of epoch 0
    state = checkpoint.load(tmp_path / "run/checkpoint.pt")
    for name, t in {**state["model"], **state["controller"]}.items():
        assert torch.isfinite(t).all(), name
    assert state["nonfinite_total"] >= 7


def test_nonfinite_stop_is_found_at_the_next_sync_point(tmp_path):
    """Without a checkpoint per step the skip counters are read every `run.log_every` steps: the run still
    stops, reporting the longest run of skips (at least the limit, at most one interval more)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "enas", "search", *TINY, "--out", "run", "--quiet",
                        "shared.lr_max=1e30", "run.max_nonfinite=3", "run.log_every=5",
                        "search.checkpoint_every=1000"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr[-2000:]
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in r.stderr, r.stderr
    longest = int(re.search(r"error: (\d+) consecutive non-finite steps", errors[0]).group(1))
    assert longest == 4, errors[0]  # steps 2..5 of the first interval, read at step 5
    skipped = [int(m) for m in re.findall(r"^(\d+) non-finite step\(s\) skipped", r.stderr, re.M)]
    assert skipped == [4], r.stderr
    assert not (tmp_path / "run/checkpoint.pt").exists()  # stopped before its first checkpoint: none written


def test_nonfinite_training_restores_batchnorm_statistics(tmp_path):
    """`enas train`: a skipped step leaves no trace, not even in BatchNorm running statistics."""
    import torch

    from enas import checkpoint

    (tmp_path / "arch.json").write_text(json.dumps(GOOD_MICRO))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "enas", "train", "arch.json", *TINY, "--out", "run", "--quiet",
                        "train.lr_max=1e30", "run.max_nonfinite=4", "search.checkpoint_every=1"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr[-2000:]
    assert [line for line in r.stderr.splitlines() if line.startswith("error:")][0].startswith(
        "error: 4 consecutive non-finite steps")
    state = checkpoint.load(tmp_path / "run/checkpoint.pt")
    for name, t in state["model"].items():
        assert not t.is_floating_point() or torch.isfinite(t).all(), name


# ------------------------------------------------------------------------------------- property tests
SPACES = [(MI, MI.MicroSpace(num_nodes=2)), (MI, MI.MicroSpace(num_nodes=3)), (MA, MA.MacroSpace(num_layers=3)),
          (MA, MA.MacroSpace(num_layers=4))]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 12) | st.integers() | st.floats(allow_nan=True) |
    st.sampled_from(["identity", "conv_3x3", "sep_conv_3x3", "max_pool_3x3", "micro", "macro", ""]) |
    st.text(max_size=8),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.sampled_from(["space", "format", "normal", "reduce", "layers", "op", "skips", "note"]) | st.text(max_size=6),
        children, max_size=5),
    max_leaves=25)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated_archs(draw):
    mod, space = draw(st.sampled_from(SPACES))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    d = mod.to_dict(mod.sample_uniform(space, rng))
    for _ in range(draw(st.integers(0, 3))):
        paths = list(_paths(d))
        path = draw(st.sampled_from(paths))
        action = draw(st.sampled_from(["replace", "delete", "append"]))
        if not path:
            if action == "replace":
                d = draw(json_values)
            continue
        parent = d
        for key in path[:-1]:
            parent = parent[key]
        if action == "replace":
            parent[path[-1]] = draw(json_values)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent[path[-1]], list):
            parent[path[-1]].append(draw(json_values))
        elif isinstance(parent[path[-1]], dict):
            parent[path[-1]][draw(st.text(max_size=4))] = draw(json_values)
    return mod, space, d


def _accepts_or_refuses(mod, space, obj) -> None:
    try:
        arch = mod.from_dict(obj, space)
    except ArchError as e:
        assert str(e) and e.errors and all(isinstance(m, str) and m for m in e.errors)
        return
    assert mod.validate(arch, space) == []
    assert mod.from_dict(json.loads(json.dumps(mod.to_dict(arch))), space) == arch


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=mutated_archs())
def test_mutated_architectures_validate_or_are_refused(data):
    _accepts_or_refuses(*data)


@settings(max_examples=300, deadline=None)
@given(space=st.sampled_from(SPACES), obj=json_values)
def test_random_json_validates_or_is_refused(space, obj):
    _accepts_or_refuses(*space, obj)


@settings(max_examples=300, deadline=None)
@given(space=st.sampled_from(SPACES), obj=json_values | st.lists(st.integers(-2, 6), max_size=40))
def test_read_arch_text_validates_or_is_refused(space, obj):
    """The command-line reader (JSON text or integer strings, any size implied by the text)."""
    mod, sp = space
    name = "micro" if mod is MI else "macro"
    text = _ints_as_text(obj) or json.dumps(obj)
    try:
        arch, got_space = archio.read_arch(text, name, sp)
    except ArchError as e:
        assert str(e)
        return
    assert mod.validate(arch, got_space) == []


def _ints_as_text(obj) -> str | None:
    """A list of integers as an integer string (the reference's format), else None."""
    if isinstance(obj, list) and obj and all(isinstance(v, int) and not isinstance(v, bool) for v in obj):
        return " ".join(map(str, obj))
    return None
