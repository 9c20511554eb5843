"""Layer 0 (spaces, config) is pure Python: importing it must not import torch."""

import subprocess
import sys


def test_layer0_does_not_import_torch():
    code = ("import sys; import enas.spaces.micro, enas.spaces.macro, enas.spaces.base, enas.config, enas.archio; "
            "bad=[m for m in sys.modules if m == 'torch' or m.startswith('torch.')]; print(len(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "0", out.stderr
