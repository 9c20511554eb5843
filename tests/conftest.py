import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def shared_data() -> Path:
    env = os.environ.get("ENAS_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data_dir() -> Path:
    d = shared_data()
    if not d.is_dir():
        pytest.skip(f"shared datasets not found at {d} (set ENAS_SHARED_DATA)")
    return d


@pytest.fixture
def one_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy 2-core machine they cost up to 10x."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


WALL_CLOCK = ("time", "elapsed")  # metric fields that differ between otherwise identical runs


def drop_clock(obj):
    """``obj`` without its wall-clock fields (for comparing two runs' metrics and results)."""
    if isinstance(obj, dict):
        return {k: drop_clock(v) for k, v in obj.items() if k not in WALL_CLOCK and not k.endswith("time_s")}
    if isinstance(obj, list):
        return [drop_clock(v) for v in obj]
    return obj
