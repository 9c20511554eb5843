"""The Ray engine: a local cluster retrains two tiny architectures in parallel; results land in the run dir."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from enas import ray_engine


def test_without_ray_the_command_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ray_engine.RayMissing, match=r"pip install 'enas\[ray\]'"):
        ray_engine._ray(None, 1, None)


def _run(args: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "enas", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_local_ray_cluster_retrains_two_archs(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    home = tmp_path / "home"
    home.mkdir()
    # Ray's own files under RAY_TMPDIR; a fake HOME shows that nothing else is written (no auth token, no stats)
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit in 107 bytes
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HOME": str(home), "RAY_TMPDIR": ray_tmp}
    try:
        _check_retrain(tmp_path, env, home)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _check_retrain(tmp_path: Path, env: dict, home: Path) -> None:
    r = _run(["search", "--preset", "tiny", "--quiet", "--epochs", "1", "--out", "s", "search.retrain=false",
              "data.limit_per_class=26", "shared.batch_size=64", "run.report=false"], tmp_path, env)
    assert r.returncode == 0, r.stderr
    r = _run(["retrain", "s", "--top-k", "2", "--engine", "ray"], tmp_path, env)
    assert r.returncode == 0, r.stderr
    summary = json.loads((tmp_path / "s" / "retrain" / "results.json").read_text())
    assert len(summary["results"]) == 2 and summary["metric"] == "valid_acc"
    for i in range(2):
        d = tmp_path / "s" / "retrain" / f"arch-{i}"
        assert (d / "result.json").exists() and (d / "model.pt").exists()
    assert summary["winner_dir"].endswith(f"arch-{summary['winner']}")
    assert "winner: arch-" in r.stdout
    assert list(home.iterdir()) == []
