"""The run report: built from a real (tiny) search, self-contained, every section present, renders in a
headless browser without console errors; missing or partial files only drop the pieces that need them."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from enas import report

SVG_NS = "{http://www.w3.org/2000/svg}"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)


# ------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def search_dir(tmp_path_factory) -> Path:
    """A real run directory: the tiny preset (2 search epochs, derive, 1 epoch of final training)."""
    import torch

    from enas import config, search
    out = tmp_path_factory.mktemp("report") / "run"
    cfg = config.load_config("tiny", overrides=["data.limit_per_class=40"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is several times faster on a busy machine
    try:
        search.search(cfg, out=out)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def search_report(search_dir) -> tuple[Path, str]:
    path = report.write_report(search_dir, extra_sections=[("Extra <notes>", '<p id="extra-p">appended</p>')])
    return path, path.read_text()


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# ------------------------------------------------------------------------------------------------- checking
class _Balance(HTMLParser):
    """Checks that every non-void element is closed in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        pass

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"unexpected </{tag}> with open {self.stack[-3:]}")
        else:
            self.stack.pop()


def check_self_contained(text: str) -> None:
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", text, re.I), "external reference"
    assert not re.search(r"url\(\s*['\"]?\s*(?:https?:)?//", text, re.I)
    assert "<script" not in text.lower() and "<link" not in text.lower() and "@import" not in text
    b = _Balance()
    b.feed(text)
    b.close()
    assert not b.errors and not b.stack, (b.errors, b.stack)
    ids = re.findall(r'\bid="([^"]+)"', text)
    assert len(ids) == len(set(ids)), "duplicate ids"


def svgs(text: str) -> list[ET.Element]:
    out = []
    for s in re.findall(r"<svg\b.*?</svg>", text, re.S):
        root = ET.fromstring(s)  # well-formed XML
        shapes = [e for e in root.iter() if e.tag.replace(SVG_NS, "") in ("path", "polyline", "polygon", "circle",
                                                                            "ellipse", "rect", "text")]
        assert len(shapes) > 3, "empty drawing"
        out.append(root)
    return out


# ------------------------------------------------------------------------------------------ the real search
def test_report_of_a_real_search(search_dir, search_report):
    path, text = search_report
    assert path == search_dir / "report.html"
    check_self_contained(text)
    for sid in ("summary", "arch", "search", "evolution", "derive", "final", "config", "env", "extra1"):
        assert f'<section id="{sid}">' in text, sid
    images = svgs(text)
    titles = {r.findtext(SVG_NS + "title") for r in images}
    for t in ("Shared weights: loss", "Shared weights: accuracy", "Controller: reward and baseline",
              "Controller: entropy", "Ops sampled per epoch", "Final training: loss", "Final training: accuracy"):
        assert t in titles, t
    drawings = [r for r in images if r.get("class") != "enas-plot"]
    assert len(drawings) >= 2  # the best architecture and at least one epoch's architecture
    assert all("normal cell" in "".join(r.itertext()) for r in drawings)
    result = json.loads((search_dir / "result.json").read_text())
    assert f"{result['final']['test_acc']:.4f}" in text
    assert "Extra &lt;notes&gt;" in text and '<p id="extra-p">appended</p>' in text
    assert "&quot;retrain&quot;: true" in text  # the resolved configuration
    rows = [json.loads(x) for x in (search_dir / "archs.jsonl").read_text().splitlines()]
    table = text[text.index('<section id="evolution">'):text.index('<section id="derive">')]
    assert table.count("<tr>") == len(rows) + 1


def test_cli_report_prints_the_path(search_dir, capsys):
    assert report.cli_report(str(search_dir)) == 0
    assert capsys.readouterr().out.strip() == str(search_dir / "report.html")


def test_errors_are_one_line(tmp_path):
    with pytest.raises(ValueError, match="no such run directory") as e:
        report.cli_report(str(tmp_path / "missing"))
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="no metrics.jsonl"):
        report.write_report(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(report.ReportError, match="no rows"):
        report.write_report(tmp_path)


# ------------------------------------------------------------------------------------ synthetic run dirs
def _macro_epoch(e: int, skips: float, freq: dict) -> dict:
    return {"kind": "epoch", "epoch": e, "global_step": 10 * (e + 1), "loss": 2.0 - 0.1 * e, "acc": 0.2 + 0.05 * e,
            "lr": 0.05, "baseline": 0.1 * e, "ctrl_reward": 0.2 + 0.05 * e, "ctrl_entropy": 30 - e,
            "ctrl_skips": skips, "op_freq": freq, "time": 10.0 * (e + 1), "nonfinite_steps": 0}


def test_macro_run_with_collapse_and_partial_files(tmp_path):
    collapse = [{"conv_3x3": 0.3, "avg_pool_3x3": 0.3, "max_pool_3x3": 0.4},
                {"conv_3x3": 0.1, "avg_pool_3x3": 0.4, "max_pool_3x3": 0.5},
                {"conv_3x3": 0.0, "avg_pool_3x3": 0.5, "max_pool_3x3": 0.5}]
    rows = [{"kind": "shared", "epoch": 0, "step": 5, "global_step": 5, "loss": 2.2, "acc": 0.1, "lr": 0.05}]
    rows += [_macro_epoch(e, 1.0 + e, f) for e, f in enumerate(collapse)]
    _write_jsonl(tmp_path / "metrics.jsonl", rows)
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"kind": "epoch", "epo')  # a torn last line
    (tmp_path / "config.json").write_text(json.dumps({"space": "macro", "space_cfg": {"num_layers": 4},
                                                      "controller": {"skip_target": 0.4}}))
    arch = {"space": "macro", "format": 1, "layers": [{"op": "conv_3x3", "skips": [1] * l} for l in range(4)]}
    _write_jsonl(tmp_path / "archs.jsonl", [{"epoch": e, "score": 0.1, "arch": arch} for e in range(3)])
    (tmp_path / "best_arch.json").write_text(json.dumps(arch))
    text = report.write_report(tmp_path).read_text()
    check_self_contained(text)
    titles = {r.findtext(SVG_NS + "title") for r in svgs(text)}
    assert "Skip connections (macro)" in titles and "Ops sampled per epoch" in titles
    assert 'class="warn"' in text and "collapsing onto parameter-free ops" in text
    assert "unreadable line" in text  # the torn line is reported, not fatal
    assert "no result.json" in text
    assert '<section id="derive">' not in text and '<section id="final">' not in text
    evolution = text[text.index('<section id="evolution">'):]
    assert evolution.count("<td>no</td>") == 2 and "1 distinct" in evolution


def test_training_run_with_perplexity(tmp_path):
    rows = [{"kind": "epoch", "epoch": e, "loss": 5.0 - e, "ppl": 150.0 - 10 * e, "valid_ppl": 160.0 - 9 * e}
            for e in range(3)]
    _write_jsonl(tmp_path / "metrics.jsonl", rows)
    arch = {"space": "rnn", "format": 1, "nodes": [{"input": -1, "activation": "tanh"},
                                                   {"input": 0, "activation": "relu"}]}
    (tmp_path / "arch.json").write_text(json.dumps(arch))
    (tmp_path / "result.json").write_text(json.dumps({"space": "rnn", "test_ppl": 120.5, "params": 123456,
                                                      "wall_time_s": 3725.0, "device": "cuda:0"}))
    text = report.write_report(tmp_path).read_text()
    check_self_contained(text)
    titles = {r.findtext(SVG_NS + "title") for r in svgs(text)}
    assert "Final training: perplexity" in titles and "Final training: loss" in titles
    assert '<section id="search">' not in text and "<h2>Training</h2>" in text
    assert "test perplexity" in text and "120.5" in text and "1h 02m 05s" in text and "123,456" in text
    assert "cuda:0" in text


# --------------------------------------------------------------------------------------- headless browser
def _chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--enable-logging=stderr",
           "--v=0", f"--user-data-dir={tmp_path / 'profile'}", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _console(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_report_renders_in_headless_chromium(search_dir, tmp_path):
    path = report.write_report(search_dir)
    text = path.read_text()
    # Positive control: the console capture does see a page's errors.
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>console.error('boom'); notDefined();</script></body></html>")
    proc = _chromium(tmp_path, bad.as_uri(), f"--screenshot={tmp_path / 'bad.png'}", "--window-size=400,300")
    assert any("boom" in line for line in _console(proc.stderr)), proc.stderr[-2000:]

    shot = tmp_path / "report.png"
    proc = _chromium(tmp_path, path.as_uri(), f"--screenshot={shot}", "--window-size=1200,3000")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert _console(proc.stderr) == []
    from PIL import Image
    with Image.open(shot) as im:
        assert im.size == (1200, 3000)
        colors = im.convert("RGB").resize((60, 150)).getcolors(maxcolors=100000)
    assert colors is not None and len(colors) > 20  # not a blank page

    proc = _chromium(tmp_path, path.as_uri(), "--dump-dom")
    assert proc.returncode == 0 and _console(proc.stderr) == []
    dom = proc.stdout
    assert dom.count("<svg") == text.count("<svg") > 5
    assert dom.count("<section") == text.count("<section")
