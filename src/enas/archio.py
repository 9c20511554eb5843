"""Read an architecture given on the command line: a JSON file, a file holding an integer string, or the
integer string itself. The space's size (nodes, layers) is taken from the architecture."""

from __future__ import annotations

import json
from pathlib import Path

from . import spaces
from .spaces.base import ArchError, parse_int_string


def read_arch(text: str, space_name: str, default_space):
    """Returns (arch, space). Raises ArchError with every problem found."""
    mod = spaces.get(space_name)
    if not text.strip():
        raise ArchError("architecture: empty (pass a JSON file, a run directory or an integer string)")
    p = Path(text)
    content = text
    if len(text) < 4096 and p.suffix.lower() in (".json", ".txt", ".arc", ".arch") or _exists(p):
        if not _exists(p):
            raise ArchError(f"architecture file {text}: not found")
        if p.is_dir():
            best = p / "best_arch.json"
            arch_json = p / "arch.json"
            p = best if best.exists() else arch_json
            if not p.exists():
                raise ArchError(f"architecture: {text} is a directory without best_arch.json or arch.json")
        try:
            content = p.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ArchError(f"architecture file {p}: cannot read ({e.__class__.__name__})") from None
    stripped = content.strip()
    if stripped.startswith("{"):
        try:
            obj = json.loads(stripped)
        except json.JSONDecodeError as e:
            raise ArchError(f"architecture JSON: invalid at line {e.lineno} column {e.colno}") from None
        if isinstance(obj, dict) and "space" in obj and obj["space"] != space_name and obj["space"] in spaces.SPACES:
            raise ArchError(f"architecture is for the {obj['space']!r} space; pass --space {obj['space']}")
        space = _infer_space(mod, obj, default_space)
        return mod.from_dict(obj, space), space
    try:
        obj: object = parse_int_string(stripped)
    except ArchError:
        obj = stripped  # a space's own string format (NAS-Bench-201's |op~0|+|op~0|op~1|+...)
    space = _infer_space(mod, obj, default_space)
    return mod.read_string(stripped, space), space


def _exists(p: Path) -> bool:
    try:
        return p.exists()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte: an integer string or JSON
        return False


def _infer_space(mod, obj, default_space):
    """The space implied by the architecture itself where the space module can tell, else the config's."""
    infer = getattr(mod, "infer_space", None)
    return default_space if infer is None else infer(obj, default_space)
