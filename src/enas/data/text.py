"""Word-level text corpora as tensors, batching and truncated back-propagation through time (BPTT).

``load_corpus(source)`` accepts:

* a directory holding the three PTB-format splits (``ptb.{train,valid,test}.txt``, or ``{train,valid,test}.txt``,
  or ``wiki.{train,valid,test}.tokens``): already tokenised text, split on whitespace;
* any other directory (every ``*.txt`` under it, sorted by path) or a single text file: lower-cased words and
  punctuation marks, non-blank lines split 90/5/5 in order (first 90% train, next 5% valid, last 5% test);
* ``"pydoc"``: the help texts shipped with Python (``pydoc_data.topics``, no download), topics in sorted
  order, tokenised and split like a plain text file.

Every line ends with ``<eos>``. The vocabulary comes from the training split only: ``<unk>`` and ``<eos>`` first,
then words by decreasing count (ties alphabetically), capped so that ``len(vocab) <= vocab_size``
(``vocab_size`` counts the two specials). Out-of-vocabulary words become ``<unk>``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
import os
from pathlib import Path

import torch

from ..errors import EnasError

UNK, EOS = "<unk>", "<eos>"
SPLITS = ("train", "valid", "test")
SPLIT_PATTERNS = ("ptb.{}.txt", "{}.txt", "wiki.{}.tokens")
PYDOC = "pydoc"
PYDOC_VOCAB_SIZE = 10000
_WORD = re.compile(r"[a-z0-9_]+|[^\sa-z0-9_]")


class TextDataError(EnasError, ValueError):
    """A text corpus cannot be read (missing files, empty split, bad sizes)."""


@dataclass(frozen=True)
class Corpus:
    vocab: tuple[str, ...]
    train: torch.Tensor  # [N] int64 token ids
    valid: torch.Tensor
    test: torch.Tensor


def tokenize_plain(line: str) -> list[str]:
    """Lower-cased words (letters, digits, underscore) and single punctuation marks."""
    return _WORD.findall(line.lower())


def build_vocab(lines: list[list[str]], vocab_size: int | None = None) -> tuple[str, ...]:
    if vocab_size is not None and vocab_size < 3:
        raise TextDataError(f"vocab_size: must be at least 3 (<unk>, <eos> and one word), got {vocab_size}")
    counts = Counter(w for line in lines for w in line)
    counts.pop(UNK, None)
    counts.pop(EOS, None)
    words = sorted(counts, key=lambda w: (-counts[w], w))
    if vocab_size is not None:
        words = words[:vocab_size - 2]
    return (UNK, EOS) + tuple(words)


def encode(lines: list[list[str]], vocab: tuple[str, ...]) -> torch.Tensor:
    index = {w: i for i, w in enumerate(vocab)}
    unk, eos = index[UNK], index[EOS]
    ids = []
    for line in lines:
        ids.extend(index.get(w, unk) for w in line)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.int64)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise TextDataError(f"cannot read {path}: {e.strerror or e}") from None


def _split_files(d: Path) -> dict[str, Path] | None:
    for pattern in SPLIT_PATTERNS:
        paths = {s: d / pattern.format(s) for s in SPLITS}
        present = [s for s, p in paths.items() if p.is_file()]
        if len(present) == 3:
            return paths
        if present and pattern == SPLIT_PATTERNS[0]:
            missing = ", ".join(str(paths[s]) for s in SPLITS if s not in present)
            raise TextDataError(f"{d}: PTB-format corpus is missing {missing}")
    return None


def _split_plain(lines: list[list[str]], where: str) -> tuple[list, list, list]:
    lines = [line for line in lines if line]
    n = len(lines)
    if n < 3:
        raise TextDataError(f"{where}: need at least 3 non-blank lines to split train/valid/test, got {n}")
    n_valid = n_test = max(1, round(0.05 * n))
    n_train = n - n_valid - n_test
    return lines[:n_train], lines[n_train:n_train + n_valid], lines[n_train + n_valid:]


def _pydoc_lines() -> list[list[str]]:
    try:
        from pydoc_data.topics import topics
    except ImportError:
        raise TextDataError("pydoc: this Python has no pydoc_data.topics (help texts not installed)") from None
    return [tokenize_plain(line) for key in sorted(topics) for line in topics[key].splitlines()]


def load_corpus(source: str | Path, *, vocab_size: int | None = None) -> Corpus:
    """Load a corpus (see the module docstring); raises TextDataError with a one-line message."""
    if str(source) == PYDOC:
        splits = _split_plain(_pydoc_lines(), "pydoc")
        vocab_size = PYDOC_VOCAB_SIZE if vocab_size is None else vocab_size
    else:
        path = Path(source).expanduser()
        if str(source) == "ptb" and not path.exists():
            env = os.environ.get("ENAS_DATA")
            path = Path(env) / "ptb" if env else path
            if not path.exists():
                raise TextDataError("ptb: pass the directory holding ptb.train.txt, ptb.valid.txt and ptb.test.txt "
                                    "with --data PATH (or set ENAS_DATA to its parent)")
        if not path.exists():
            raise TextDataError(f"{path}: no such file or directory (give a PTB-format directory, a text file, "
                                f"a directory of .txt files or 'pydoc')")
        files = _split_files(path) if path.is_dir() else None
        if files is not None:
            splits = tuple([line.split() for line in _read_lines(files[s])] for s in SPLITS)
            splits = tuple([line for line in lines if line] for lines in splits)
            for s, lines in zip(SPLITS, splits):
                if not lines:
                    raise TextDataError(f"{files[s]}: the {s} split is empty")
        else:
            texts = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
            if not texts:
                raise TextDataError(f"{path}: no PTB-format splits and no .txt files in this directory")
            lines = [tokenize_plain(line) for f in texts for line in _read_lines(f)]
            splits = _split_plain(lines, str(path))
    vocab = build_vocab(splits[0], vocab_size)
    if len(vocab) <= 2:
        raise TextDataError(f"{source}: the training split has no words")
    train, valid, test = (encode(lines, vocab) for lines in splits)
    return Corpus(vocab, train, valid, test)


def batchify(data: torch.Tensor, batch_size: int) -> torch.Tensor:
    """[N] -> [N // batch_size, batch_size]: column b is a contiguous stretch of the text (tail dropped)."""
    if batch_size < 1:
        raise TextDataError(f"batch_size: must be positive, got {batch_size}")
    steps = data.numel() // batch_size
    if steps < 2:
        raise TextDataError(f"batchify: {data.numel()} tokens are too few for batch size {batch_size}")
    return data[:steps * batch_size].view(batch_size, steps).t().contiguous()


def sample_seq_len(bptt: int, generator: torch.Generator | None, variable: bool = True) -> int:
    """AWD-LSTM's random BPTT length: ``bptt`` w.p. 0.95 else ``bptt/2``, then N(that, 5), at least 5."""
    if not variable:
        return bptt
    u = torch.rand((), generator=generator).item()
    base = bptt if u < 0.95 else bptt / 2
    seq = int(base + 5.0 * torch.randn((), generator=generator).item())
    return max(5, min(seq, bptt + 40))  # AWD also caps the length (max_seq_len_delta = 40)


def get_batch(source: torch.Tensor, i: int, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs ``source[i:i+L]`` and targets ``source[i+1:i+1+L]`` with ``L = min(seq_len, T-1-i)``."""
    seq_len = min(seq_len, source.shape[0] - 1 - i)
    return source[i:i + seq_len], source[i + 1:i + 1 + seq_len]


def bptt_batches(source: torch.Tensor, bptt: int, generator: torch.Generator | None = None,
                 variable: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x [L,B], y [L,B]) over one pass of ``source`` [T,B]; random lengths when ``variable``."""
    i = 0
    while i < source.shape[0] - 1:
        x, y = get_batch(source, i, sample_seq_len(bptt, generator, variable))
        i += x.shape[0]
        yield x, y


class BPTTIterator:
    """Epochs of BPTT batches with a resumable position: ``state_dict()`` holds the position, the epoch and the
    generator state, so a run restored with ``load_state_dict`` continues mid-epoch with the same batches.
    """

    def __init__(self, source: torch.Tensor, bptt: int, *, variable: bool = True, seed: int = 0):
        self.source, self.bptt, self.variable = source, bptt, variable
        self.generator = torch.Generator().manual_seed(seed)
        self.pos, self.epoch = 0, 0

    def __len__(self) -> int:
        """Batches per epoch at the nominal length (an estimate when ``variable``)."""
        return math.ceil((self.source.shape[0] - 1) / self.bptt)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The rest of the current epoch; the position then wraps to the next epoch."""
        while self.pos < self.source.shape[0] - 1:
            x, y = get_batch(self.source, self.pos, sample_seq_len(self.bptt, self.generator, self.variable))
            self.pos += x.shape[0]
            yield x, y
        self.pos, self.epoch = 0, self.epoch + 1

    def state_dict(self) -> dict:
        return {"pos": self.pos, "epoch": self.epoch, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.pos, self.epoch = int(state["pos"]), int(state["epoch"])
        self.generator.set_state(state["generator"])
