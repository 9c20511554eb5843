"""Checkpoint files: atomic writes, format header + checksum, safe (weights_only) loading, `.prev` fallback."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle

import pytest
import torch

from enas import checkpoint, cli
from enas import config as C
from enas.checkpoint import CheckpointError


def _state(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"kind": "search", "model": {"w": torch.randn(3, 4, generator=g), "b": torch.zeros(4)},
            "opt": {"state": {}, "param_groups": [{"lr": 0.1, "params": [0, 1]}]}, "epoch": seed, "step": 3,
            "phase": "shared", "best": None, "sums": {"loss": torch.tensor(1.5)}, "elapsed": 1.25}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if isinstance(a[k], torch.Tensor):
            assert torch.equal(a[k], b[k]), k
        elif isinstance(a[k], dict):
            _assert_same(a[k], b[k])
        else:
            assert a[k] == b[k], k


def _write_with_header(path, payload: bytes, fmt: int = checkpoint.FORMAT) -> None:
    """A file with a *valid* header and checksum around ``payload``: only the safe unpickler protects us."""
    digest = hashlib.sha256(payload).hexdigest().encode()
    path.write_bytes(checkpoint.MAGIC + b" %d %s\n" % (fmt, digest) + payload)


class _Exploit:
    """Unpickling this runs ``touch MARKER`` (os.system)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _malicious_payloads(marker) -> dict[str, bytes]:
    zipped = io.BytesIO()
    torch.save({"model": {"w": torch.zeros(1)}, "epoch": 0, "evil": _Exploit(marker)}, zipped)
    return {"torch-zip": zipped.getvalue(),
            "raw-pickle": pickle.dumps({"epoch": 0, "evil": _Exploit(marker)}, protocol=2)}


# ----------------------------------------------------------------------------------------- round trip
def test_round_trip_and_file_layout(tmp_path):
    p = tmp_path / "checkpoint.pt"
    checkpoint.save(_state(1), p)
    _assert_same(checkpoint.load(p), _state(1))
    head = p.read_bytes().split(b"\n", 1)[0].split()
    assert head[0] == checkpoint.MAGIC and int(head[1]) == checkpoint.FORMAT and len(head[2]) == 64
    assert not checkpoint.previous(p).exists()  # nothing to keep yet
    checkpoint.save(_state(2), p)
    _assert_same(checkpoint.load(p), _state(2))
    _assert_same(checkpoint.load(checkpoint.previous(p)), _state(1))
    assert not (tmp_path / "checkpoint.pt.tmp").exists()


def test_generator_states_round_trip(tmp_path):
    gens = {"data": torch.Generator().manual_seed(5), "aug": torch.Generator().manual_seed(6)}
    torch.manual_seed(7)
    for g in gens.values():
        torch.rand(10, generator=g)
    checkpoint.save({"rng": checkpoint.rng_state(gens)}, tmp_path / "c.pt")
    expected = {k: torch.rand(4, generator=g) for k, g in gens.items()}
    expected["torch"] = torch.rand(4)
    for g in gens.values():  # move every generator on
        torch.rand(100, generator=g)
    torch.rand(100)
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "c.pt")["rng"], gens)
    got = {k: torch.rand(4, generator=g) for k, g in gens.items()}
    got["torch"] = torch.rand(4)
    _assert_same(got, expected)


def test_failed_swap_leaves_a_loadable_checkpoint(tmp_path, monkeypatch):
    """A crash between moving checkpoint.pt to .prev and renaming the new file: the previous one is used."""
    p = tmp_path / "checkpoint.pt"
    checkpoint.save(_state(1), p)
    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the rename of the new file into place
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", replace)
    with pytest.raises(OSError):
        checkpoint.save(_state(2), p)
    monkeypatch.setattr(checkpoint.os, "replace", real_replace)
    assert not p.exists()
    state, used, warning = checkpoint.load_latest(p)
    _assert_same(state, _state(1))
    assert used.name == "checkpoint.pt.prev" and "checkpoint.pt.prev" in warning and "not found" in warning


def test_crash_hook_costs_nothing_when_unset(tmp_path, monkeypatch):
    monkeypatch.delenv(checkpoint.CRASH_ENV, raising=False)
    checkpoint.save(_state(), tmp_path / "c.pt")
    monkeypatch.setenv(checkpoint.CRASH_ENV, "tmp:999999")  # another stage/count: no effect
    checkpoint.save(_state(), tmp_path / "c.pt")
    assert checkpoint.load(tmp_path / "c.pt")["epoch"] == 0


# ------------------------------------------------------------------------------------------- malicious
@pytest.mark.parametrize("kind", ["torch-zip", "raw-pickle"])
def test_malicious_checkpoint_with_valid_header_is_refused(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    _write_with_header(path, _malicious_payloads(marker)[kind])
    with pytest.raises(CheckpointError, match="refused by the safe loader"):
        checkpoint.load(path)
    assert not marker.exists()
    # and no fallback silently hides it: load_latest reports it too (no .prev here)
    with pytest.raises(CheckpointError, match="refused by the safe loader.*no previous checkpoint"):
        checkpoint.load_latest(path)
    assert not marker.exists()


def test_the_exploit_is_real(tmp_path):
    """Guard for the test above: the payload does run code when unpickled without weights_only."""
    marker = tmp_path / "pwned"
    pickle.loads(_malicious_payloads(marker)["raw-pickle"])
    assert marker.exists()


@pytest.mark.parametrize("kind", ["torch-zip", "raw-pickle"])
def test_malicious_checkpoint_without_header_is_refused(tmp_path, kind):
    marker = tmp_path / "pwned"
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(_malicious_payloads(marker)[kind])
    with pytest.raises(CheckpointError, match="not an enas checkpoint"):
        checkpoint.load(path)
    assert not marker.exists()


def test_harmless_foreign_object_is_refused(tmp_path):
    buf = io.BytesIO()
    torch.save({"config": C.Config()}, buf)  # a dataclass: not plain data
    _write_with_header(tmp_path / "c.pt", buf.getvalue())
    with pytest.raises(CheckpointError, match="refused by the safe loader"):
        checkpoint.load(tmp_path / "c.pt")


# ---------------------------------------------------------------------------------- truncated, corrupted
def _two_saves(tmp_path):
    p = tmp_path / "checkpoint.pt"
    checkpoint.save(_state(1), p)
    checkpoint.save(_state(2), p)
    return p


def _truncate(p):
    data = p.read_bytes()
    p.write_bytes(data[:len(data) * 2 // 3])


def _flip_payload_byte(p):
    data = bytearray(p.read_bytes())
    data[len(data) // 2] ^= 0x40
    p.write_bytes(bytes(data))


def _flip_header_digest(p):
    data = bytearray(p.read_bytes())
    i = data.index(b"\n") - 1
    data[i] = ord("0") if data[i] != ord("0") else ord("1")
    p.write_bytes(bytes(data))


def _empty(p):
    p.write_bytes(b"")


@pytest.mark.parametrize("damage", [_truncate, _flip_payload_byte, _flip_header_digest])
def test_damaged_checkpoint_detected_and_previous_offered(tmp_path, damage):
    p = _two_saves(tmp_path)
    damage(p)
    with pytest.raises(CheckpointError, match="checksum mismatch"):
        checkpoint.load(p)
    state, used, warning = checkpoint.load_latest(p)
    _assert_same(state, _state(1))
    assert used == checkpoint.previous(p)
    assert "checksum mismatch" in warning and "using the previous checkpoint checkpoint.pt.prev" in warning


def test_empty_file_and_missing_header(tmp_path):
    p = _two_saves(tmp_path)
    _empty(p)
    with pytest.raises(CheckpointError, match="missing header"):
        checkpoint.load(p)
    assert checkpoint.load_latest(p)[1].name == "checkpoint.pt.prev"


def test_both_damaged_reports_both(tmp_path):
    p = _two_saves(tmp_path)
    _truncate(p)
    _flip_payload_byte(checkpoint.previous(p))
    with pytest.raises(CheckpointError) as e:
        checkpoint.load_latest(p)
    msg = str(e.value)
    assert msg.count("checksum mismatch") == 2 and "previous checkpoint is unusable too" in msg


def test_wrong_format_version(tmp_path):
    buf = io.BytesIO()
    torch.save(_state(), buf)
    _write_with_header(tmp_path / "c.pt", buf.getvalue(), fmt=checkpoint.FORMAT + 1)
    with pytest.raises(CheckpointError, match=f"format version {checkpoint.FORMAT + 1}, this enas reads "
                                              f"version {checkpoint.FORMAT}"):
        checkpoint.load(tmp_path / "c.pt")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        checkpoint.load(tmp_path / "nothing.pt")


# --------------------------------------------------------------------------------------------- the CLI
def _fake_run_dir(tmp_path):
    """A search run directory (config.json + checkpoint) without running a search."""
    rd = tmp_path / "run"
    rd.mkdir()
    (rd / "config.json").write_text(json.dumps(C.to_dict(C.load_config(preset="tiny"))))
    (rd / "metrics.jsonl").write_text('{"kind": "epoch", "epoch": 0}\n')
    checkpoint.save(_state(1), rd / "checkpoint.pt", keep_previous=False)
    return rd


def _files(rd):
    return {f: f.read_bytes() for f in sorted(rd.rglob("*")) if f.is_file()}


def _cli(argv, capsys):
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    return rc, lines, err


@pytest.mark.parametrize("damage", [_truncate, _flip_payload_byte])
def test_cli_resume_with_damaged_checkpoint_and_no_prev(tmp_path, capsys, damage):
    rd = _fake_run_dir(tmp_path)
    damage(rd / "checkpoint.pt")
    before = _files(rd)
    rc, lines, err = _cli(["search", "--resume", str(rd)], capsys)
    assert rc == 2
    assert len(lines) == 1 and lines[0].startswith("error: checkpoint") and "Traceback" not in err
    assert "checksum mismatch" in lines[0] and "no previous checkpoint" in lines[0]
    assert _files(rd) == before


def test_cli_resume_with_malicious_checkpoint(tmp_path, capsys):
    rd = _fake_run_dir(tmp_path)
    marker = tmp_path / "pwned"
    _write_with_header(rd / "checkpoint.pt", _malicious_payloads(marker)["torch-zip"])
    before = _files(rd)
    rc, lines, err = _cli(["search", "--resume", str(rd)], capsys)
    assert rc == 2 and len(lines) == 1 and "refused by the safe loader" in lines[0], err
    assert not marker.exists()
    assert _files(rd) == before


def test_cli_resume_of_a_training_checkpoint_as_search(tmp_path, capsys):
    rd = _fake_run_dir(tmp_path)
    checkpoint.save({**_state(1), "kind": "train"}, rd / "checkpoint.pt", keep_previous=False)
    before = _files(rd)
    rc, lines, err = _cli(["search", "--resume", str(rd)], capsys)
    assert rc == 2 and len(lines) == 1 and "not a search checkpoint" in lines[0], err
    assert _files(rd) == before


def test_signal_handlers_restored_after_cli(tmp_path, capsys):
    import signal
    before = signal.getsignal(signal.SIGINT)
    _cli(["search", "--resume", str(tmp_path / "none")], capsys)
    assert signal.getsignal(signal.SIGINT) is before
