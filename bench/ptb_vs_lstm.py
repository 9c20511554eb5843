"""Issue 5's honest baseline: the derived ENAS cell against an nn.LSTM language model of the same parameter
count, trained with the same budget and regularisation on Penn Treebank (CPU-sized).

    python bench/ptb_vs_lstm.py --run RUN_DIR [--data ../shared/data/ptb] [--epochs 2] [--max-batches 200]

RUN_DIR is an rnn search run (its best_arch.json is used) or a file/integer string of a cell.
Prints one JSON object with both models' parameter counts and validation/test perplexities.
The same comparison is one command in the harness: ``enas train --space rnn ARCH --baseline lstm``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from enas import build, config as C
from enas.archio import read_arch
from enas.data.text import load_corpus
from enas.lm import train_lm
from enas.models.rnn import LSTMModel, count_parameters, matching_lstm
from enas.text_task import fixed_lm_model


def lstm_of_size(target: int, vocab: int, embed: int, net: C.NetConfig) -> LSTMModel:
    """A one-layer tied LSTM (embedding = hidden) whose parameter count is closest to ``target``: the harness's
    own baseline (``enas train --baseline lstm`` uses the same ``enas.models.rnn.matching_lstm``)."""
    return matching_lstm(target, vocab, net)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "ptb"))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--max-batches", type=int, default=200)
    ap.add_argument("--hidden", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    cfg = C.load_config("ptb-final", overrides=[f"final_net.embed_size={args.hidden}",
                                                f"final_net.hidden_size={args.hidden}"])
    arch, space = read_arch(args.run, "rnn", build.make_space(cfg))
    corpus = load_corpus(args.data, vocab_size=10000)
    enas_model = fixed_lm_model(cfg, arch, space, vocab_size=len(corpus.vocab))
    n = count_parameters(enas_model)
    lstm = lstm_of_size(n, len(corpus.vocab), args.hidden, cfg.final_net)
    out = {"data": args.data, "epochs": args.epochs, "max_batches_per_epoch": args.max_batches,
           "batch_size": 64, "bptt": 35, "arch": arch.__dict__ if hasattr(arch, "__dict__") else str(arch)}
    for name, model in (("enas_cell", enas_model), ("lstm", lstm)):
        torch.manual_seed(args.seed)
        t = time.perf_counter()
        res = train_lm(model, corpus, epochs=args.epochs, batch_size=64, bptt=35, lr=20.0, clip=0.25,
                       weight_decay=1.6e-6, ar_alpha=0.7, tar_beta=0.0,
                       arch=None, eval_batch_size=10, test_batch_size=10, seed=args.seed,
                       max_batches=args.max_batches)
        out[name] = {"params": count_parameters(model), "valid_ppl": res["valid_ppl"], "test_ppl": res["test_ppl"],
                     "seconds": round(time.perf_counter() - t, 1)}
    print(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
