"""Recurrent space, ENAS cell language models, text data and LM procedures (fast, tiny sizes)."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from enas.data.text import (BPTTIterator, TextDataError, batchify, bptt_batches, build_vocab, load_corpus)
from enas.lm import _averaged_weights, evaluate_ppl, lm_step, perplexity, reward, train_lm
from enas.models.rnn import LSTMModel, RNNModel, count_parameters
from enas.spaces import rnn as R
from enas.spaces.base import ArchError, check_program

SPACE = R.RNNSpace()
TINY = R.RNNSpace(num_nodes=5)
SRC = Path(__file__).resolve().parents[1] / "src"


pytestmark = pytest.mark.usefixtures("one_thread")


def shared_data() -> Path:
    env = os.environ.get("ENAS_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[1].parent / "shared" / "data"


def random_archs(space: R.RNNSpace, n: int, seed: int = 0) -> list[R.RNNArch]:
    rng = random.Random(seed)
    return [R.sample_uniform(space, rng) for _ in range(n)]


def errors_of(fn, *args, **kwargs) -> str:
    with pytest.raises(ArchError) as e:
        fn(*args, **kwargs)
    return str(e.value)


# ---------------------------------------------------------------- space


def test_layer0_imports_no_torch():
    code = "import sys, enas.spaces.rnn; assert 'torch' not in sys.modules, 'torch imported'"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


@pytest.mark.parametrize("space", [SPACE, TINY, R.RNNSpace(1), R.RNNSpace(9, ("tanh", "relu"))])
def test_program_consumes_decisions(space):
    check_program(R.program(space), R.decisions(space))
    ds = R.decisions(space)
    assert len(ds) == 2 * space.num_nodes - 1
    assert [d.size for d in ds if d.kind == "input"] == list(range(1, space.num_nodes))


def test_round_trips():
    for space in (SPACE, TINY, R.RNNSpace(6, ("relu", "tanh"))):
        for arch in random_archs(space, 30):
            assert R.validate(arch, space) == []
            assert R.arch_from_actions(R.actions_from_arch(arch, space), space) == arch
            assert R.from_dict(json.loads(json.dumps(R.to_dict(arch))), space) == arch
            assert R.from_enas_string(R.to_enas_string(arch), space) == arch
            if arch.activations[0] == "tanh":
                s = R.to_enas_string(arch, flavor="enas_lm")
                assert R.from_enas_string(s, space, flavor="enas_lm") == arch
            assert R.loose_ends(arch) and R.loose_ends(arch)[-1] == space.num_nodes - 1
            assert "h_t = mean(" in R.describe(arch)


def test_paper_arch_string():
    arch = R.from_enas_string(R.PAPER_ARCH_STRING, SPACE)
    assert arch.num_nodes == 12 and R.to_enas_string(arch) == R.PAPER_ARCH_STRING
    assert arch.inputs == (-1, 0, 1, 2, 2, 2, 5, 1, 6, 8, 8, 8)
    assert arch.activations[:4] == ("tanh", "tanh", "relu", "relu")
    assert R.loose_ends(arch) == [3, 4, 7, 9, 10, 11]


def test_enas_lm_string_uses_its_own_codes():
    arch = R.from_enas_string(R.ENAS_LM_ARCH_STRING, R.RNNSpace(9), flavor="enas_lm")
    assert arch.activations == ("tanh", "sigmoid", "tanh", "relu", "sigmoid", "tanh", "tanh", "sigmoid", "sigmoid")
    assert arch.inputs == (-1, 0, 1, 2, 2, 4, 5, 3, 6)
    assert R.to_enas_string(arch, flavor="enas_lm") == R.ENAS_LM_ARCH_STRING
    # the same ints read as the TF layout are a different (and here wrongly sized) cell
    assert "2N-1" in errors_of(R.from_enas_string, R.ENAS_LM_ARCH_STRING, R.RNNSpace(9))
    assert "that string has 9 nodes" in errors_of(R.from_enas_string, R.ENAS_LM_ARCH_STRING, SPACE,
                                                   flavor="enas_lm")


def test_darts_genotype():
    arch = R.from_darts_genotype(R.DARTS_ENAS_RECURRENT, R.DARTS_ENAS_CONCAT)
    assert arch.num_nodes == 12
    assert R.loose_ends(arch) == [2, 5, 6, 9, 10, 11]
    assert R.darts_output(arch, R.DARTS_ENAS_CONCAT) == "loose_ends"
    text = ("Genotype(recurrent=[('relu', 0), ('relu', 1), ('tanh', 2), ('relu', 3), ('relu', 4), "
            "('identity', 1), ('relu', 5), ('relu', 1)], concat=range(1, 9))")
    darts = R.from_darts_genotype(text)
    assert darts.inputs == (-1, 0, 1, 2, 3, 4, 1, 5, 1) and darts.activations[6] == "identity"
    assert R.darts_output(darts, range(1, 9)) == "all"
    assert "neither" in errors_of(R.from_darts_genotype, R.DARTS_ENAS_RECURRENT, [1, 2])
    assert "unknown activation 'none'" in errors_of(R.from_darts_genotype, [("none", 0)])


# ---------------------------------------------------------------- validation errors, each named


def test_space_check_errors():
    assert R.RNNSpace().check() == []
    assert "num_nodes" in R.RNNSpace(0).check()[0]
    assert "unknown activation 'gelu'" in R.RNNSpace(3, ("gelu",)).check()[0]
    assert "unique" in R.RNNSpace(3, ("tanh", "tanh")).check()[0]
    assert "at least one" in R.RNNSpace(3, ()).check()[0]


def test_validate_errors():
    ok = R.RNNArch(("tanh", "relu", "tanh"), (-1, 0, 1))
    space = R.RNNSpace(3)
    assert R.validate(ok, space) == []
    cases = {
        "expected 3 activations": R.RNNArch(("tanh", "relu"), (-1, 0)),
        "2 inputs": R.RNNArch(("tanh", "relu", "tanh"), (-1, 0)),
        "node0.input": R.RNNArch(("tanh", "relu", "tanh"), (0, 0, 1)),
        "node2.input: must be an integer in [0, 1], got 2": R.RNNArch(("tanh", "relu", "tanh"), (-1, 0, 2)),
        "node1.input: must be an integer in [0, 0], got True": R.RNNArch(("tanh", "relu", "tanh"), (-1, True, 1)),
        "node2.activation: unknown activation 'gelu'": R.RNNArch(("tanh", "relu", "gelu"), (-1, 0, 1)),
    }
    for message, arch in cases.items():
        assert any(message in e for e in R.validate(arch, space)), (message, R.validate(arch, space))
    # every problem at once
    bad = R.RNNArch(("x", "y", "z"), (0, 5, 7))
    assert len(R.validate(bad, space)) == 6


def test_from_dict_errors():
    space = R.RNNSpace(2)
    good = {"space": "rnn", "format": 1, "nodes": [{"activation": "tanh"}, {"input": 0, "activation": "relu"}]}
    assert R.from_dict(good, space) == R.RNNArch(("tanh", "relu"), (-1, 0))
    assert "expected a JSON object" in errors_of(R.from_dict, [1], space)
    cases = [
        ({**good, "space": "micro"}, "space: expected 'rnn'"),
        ({**good, "format": 2}, "format: expected 1"),
        ({**good, "nodes": 3}, "nodes: expected a list"),
        ({**good, "nodes": [{"activation": "tanh"}, 5]}, "node1: expected an object"),
        ({**good, "nodes": [{"activation": "tanh"}, {"input": 0}]}, "node1.activation: missing"),
        ({**good, "nodes": [{"activation": "tanh"}, {"activation": "relu"}]}, "node1.input: missing"),
        ({**good, "nodes": [{"activation": "tanh"}, {"input": 0, "activation": 3}]}, "expected a name"),
        ({**good, "nodes": [{"activation": "tanh", "op": 1}, {"input": 0, "activation": "relu"}]},
         "node0: unknown fields op"),
        ({**good, "extra": 1}, "unknown fields: extra"),
        ({**good, "nodes": [{"activation": "tanh"}, {"input": 1, "activation": "relu"}]},
         "node1.input: must be an integer in [0, 0]"),
    ]
    for d, message in cases:
        assert message in errors_of(R.from_dict, d, space), message


def test_integer_string_and_action_errors():
    space = R.RNNSpace(3)
    assert "expected 5 integers (2N-1)" in errors_of(R.from_enas_string, "0 0 0", space)
    assert "expected 4 integers" in errors_of(R.from_enas_string, "0 0 0", space, flavor="enas_lm")
    assert "code 4 out of range" in errors_of(R.from_enas_string, "4 0 0 0 0", space)
    assert "node2.input" in errors_of(R.from_enas_string, "0 0 0 2 0", space)
    assert "not an integer" in errors_of(R.from_enas_string, "0 0 a 1 0", space)
    assert "flavor" in errors_of(R.from_enas_string, "0 0 0 0 0", space, flavor="nni")
    assert "fix node 0 to tanh" in errors_of(R.to_enas_string, R.RNNArch(("relu",), (-1,)), flavor="enas_lm")
    assert "expected 5 integers" in errors_of(R.arch_from_actions, [0, 0], space)
    assert "activation index 4" in errors_of(R.arch_from_actions, [0, 0, 0, 0, 4], space)
    assert "node2.input" in errors_of(R.arch_from_actions, [0, 0, 0, 2, 0], space)
    sub = R.RNNSpace(3, ("tanh", "relu"))
    assert "unknown activation 'identity'" in errors_of(R.from_enas_string, "2 0 0 0 0", sub)


_junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 12), st.text(max_size=4), st.floats(allow_nan=False),
                  st.sampled_from(list(R.ACTIVATIONS)))
_node = st.dictionaries(st.sampled_from(["input", "activation", "op"]), _junk, max_size=3)
_arch_dict = st.fixed_dictionaries(
    {"space": st.sampled_from(["rnn", "micro"]), "format": st.sampled_from([1, 2]),
     "nodes": st.one_of(st.lists(_node, max_size=6), _junk)},
    optional={"note": st.text(max_size=3), "x": _junk})


@settings(max_examples=200, deadline=None)
@given(_arch_dict, st.integers(1, 5))
def test_random_dicts_validate_or_raise_arch_error(d, n):
    space = R.RNNSpace(n)
    try:
        arch = R.from_dict(d, space)
    except ArchError as e:
        assert e.errors
    else:
        assert R.validate(arch, space) == [] and R.from_dict(R.to_dict(arch), space) == arch


# ---------------------------------------------------------------- models

V, H = 23, 8


def tiny_model(arch=None, space=TINY, **kw) -> RNNModel:
    torch.manual_seed(0)
    return RNNModel(space, vocab_size=V, embed_size=H, hidden_size=H, arch=arch, **kw)


def tokens(t=6, b=3, seed=0):
    return torch.randint(0, V, (t, b), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("output", ["loose_ends", "all"])
def test_supernet_equals_fixed(output):
    sup = tiny_model(output=output).eval()
    sd = sup.state_dict()
    x = tokens()
    h0 = torch.randn(3, H, generator=torch.Generator().manual_seed(1))
    for arch in random_archs(TINY, 6, seed=3):
        fixed = RNNModel(TINY, vocab_size=V, embed_size=H, hidden_size=H, arch=arch, output=output).eval()
        assert set(fixed.state_dict()) <= set(sd)
        fixed.load_state_dict({k: sd[k] for k in fixed.state_dict()})
        ls, hs, _ = sup(x, h0, arch)
        lf, hf, _ = fixed(x, h0)
        torch.testing.assert_close(lf, ls, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(hf, hs, atol=1e-5, rtol=1e-5)
        assert count_parameters(fixed) < count_parameters(sup)


def test_output_modes_differ_and_shapes():
    arch = R.RNNArch(("tanh", "relu", "sigmoid", "identity", "tanh"), (-1, 0, 0, 1, 1))
    a = tiny_model(arch).eval()
    b = tiny_model(arch, output="all").eval()
    b.load_state_dict(a.state_dict())
    x = tokens()
    la, ha, extras = a(x, a.init_hidden(3))
    lb, hb, _ = b(x, b.init_hidden(3))
    assert la.shape == (6, 3, V) and ha.shape == (3, H) and extras["raw_output"].shape == (6, 3, H)
    assert not torch.allclose(la, lb)


def test_gradient_routing():
    sup = tiny_model().train()
    x, y = tokens(), tokens(seed=1)
    seen = set()
    for arch in random_archs(TINY, 25, seed=5):
        sup.zero_grad(set_to_none=True)
        loss, _, _ = lm_step(sup, x, y, sup.init_hidden(3), arch, ar_alpha=1.0, tar_beta=1.0)
        loss.backward()
        used = {f"cell.w.{i}_{arch.inputs[i]}" for i in range(1, TINY.num_nodes)}
        for name, p in sup.named_parameters():
            if name.startswith("cell.w."):
                assert (p.grad is not None) == (name in used), name
            else:
                assert p.grad is not None, name
            if p.grad is not None and p.grad.abs().sum() > 0:
                seen.add(name)
    assert seen == {n for n, _ in sup.named_parameters()}


def test_model_errors():
    sup = tiny_model()
    with pytest.raises(ValueError, match="supernet"):
        sup(tokens(), sup.init_hidden(3))
    a = R.RNNArch(("tanh", "relu", "tanh", "tanh", "relu"), (-1, 0, 1, 2, 3))
    b = R.RNNArch(("tanh", "relu", "tanh", "tanh", "relu"), (-1, 0, 0, 2, 3))
    fixed = tiny_model(a)
    assert fixed(tokens(), fixed.init_hidden(3), a)[0].shape == (6, 3, V)
    with pytest.raises(ValueError, match="fixed"):
        fixed(tokens(), fixed.init_hidden(3), b)
    with pytest.raises(ValueError, match="nodes"):
        sup(tokens(), sup.init_hidden(3), R.RNNArch(("tanh",), (-1,)))
    with pytest.raises(ValueError, match="tie_weights"):
        RNNModel(TINY, vocab_size=V, embed_size=4, hidden_size=H)
    with pytest.raises(ValueError, match="node1.input"):
        RNNModel(TINY, vocab_size=V, embed_size=H, hidden_size=H, arch=R.RNNArch(a.activations, (-1, 3, 0, 0, 0)))
    untied = RNNModel(TINY, vocab_size=V, embed_size=4, hidden_size=H, tie_weights=False)
    assert untied(tokens(), untied.init_hidden(3), a)[0].shape == (6, 3, V)


def test_dropout_masks_reproducible():
    arch = random_archs(TINY, 1)[0]
    m = tiny_model(arch).train()
    x = tokens()
    outs = []
    for _ in range(2):
        outs.append(m(x, m.init_hidden(3), generator=torch.Generator().manual_seed(7))[0])
    torch.manual_seed(3)
    outs.append(m(x, m.init_hidden(3))[0])
    torch.manual_seed(3)
    outs.append(m(x, m.init_hidden(3))[0])
    torch.testing.assert_close(outs[0], outs[1])
    torch.testing.assert_close(outs[2], outs[3])
    assert not torch.allclose(outs[0], outs[2])
    m.eval()
    torch.testing.assert_close(m(x, m.init_hidden(3))[0], m(x, m.init_hidden(3))[0])


def test_lstm_baseline():
    torch.manual_seed(0)
    m = LSTMModel(vocab_size=V, embed_size=H, hidden_size=12, num_layers=2, dropout_w=0.3).train()
    x, y = tokens(), tokens(seed=1)
    loss, raw, hidden = lm_step(m, x, y, m.init_hidden(3), ar_alpha=2.0, tar_beta=1.0)
    loss.backward()
    assert all(p.grad is not None for p in m.parameters())
    assert hidden[-1][0].shape == (1, 3, H) and not hidden[0][0].requires_grad
    assert count_parameters(m) > 0
    with pytest.raises(ValueError, match="tie_weights"):
        LSTMModel(vocab_size=V, embed_size=H, hidden_size=12)


def test_ptb_final_size():
    arch = R.from_enas_string(R.PAPER_ARCH_STRING, SPACE)
    m = RNNModel(SPACE, vocab_size=10000, embed_size=788, hidden_size=788, arch=arch)
    # 26 H^2 (W_in [2H,2H] + 11 edges [H,2H]) + V*H (tied) + V (decoder bias)
    assert count_parameters(m) == 26 * 788 ** 2 + 10000 * 788 + 10000 == 24_034_544


# ---------------------------------------------------------------- text data


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_load_ptb_format(tmp_path):
    write(tmp_path / "ptb.train.txt", " a b c a \n b a <unk> \n")
    write(tmp_path / "ptb.valid.txt", " a z \n")
    write(tmp_path / "ptb.test.txt", " c \n")
    c = load_corpus(tmp_path)
    assert c.vocab == ("<unk>", "<eos>", "a", "b", "c")
    assert c.train.tolist() == [2, 3, 4, 2, 1, 3, 2, 0, 1]
    assert c.valid.tolist() == [2, 0, 1] and c.test.tolist() == [4, 1]
    assert c.train.dtype == torch.int64
    capped = load_corpus(tmp_path, vocab_size=3)
    assert capped.vocab == ("<unk>", "<eos>", "a")
    assert build_vocab([["y", "x", "x", "y", "w"]], 4) == ("<unk>", "<eos>", "x", "y")  # tie: alphabetical


def test_load_plain_text(tmp_path):
    lines = [f"Line {i}, word{i % 7}!" for i in range(40)] + ["", "   "]
    f = write(tmp_path / "book.txt", "\n".join(lines))
    c = load_corpus(f)
    assert c.train.numel() == 36 * 6 and c.valid.numel() == 2 * 6 and c.test.numel() == 2 * 6
    assert "," in c.vocab and "line" in c.vocab and "Line" not in c.vocab
    (tmp_path / "sub").mkdir()
    write(tmp_path / "sub" / "more.txt", "more text here\n")
    d = load_corpus(tmp_path)
    assert d.train.numel() + d.valid.numel() + d.test.numel() == c.train.numel() + 12 + 12 + 4
    assert load_corpus(f).train.equal(c.train)


def test_load_errors(tmp_path):
    cases = [
        (tmp_path / "nope", "no such file"),
        (write(tmp_path / "empty.txt", "\n\n"), "at least 3 non-blank lines"),
    ]
    (tmp_path / "ptbdir").mkdir()
    write(tmp_path / "ptbdir" / "ptb.train.txt", "a b\n")
    cases.append((tmp_path / "ptbdir", "missing"))
    (tmp_path / "emptydir").mkdir()
    cases.append((tmp_path / "emptydir", "no .txt files"))
    (tmp_path / "emptysplit").mkdir()
    for s, t in (("train", "a\n"), ("valid", "\n"), ("test", "a\n")):
        write(tmp_path / "emptysplit" / f"ptb.{s}.txt", t)
    cases.append((tmp_path / "emptysplit", "valid split is empty"))
    for source, message in cases:
        with pytest.raises(TextDataError, match=message) as e:
            load_corpus(source)
        assert "\n" not in str(e.value)
    with pytest.raises(TextDataError, match="vocab_size"):
        load_corpus("pydoc", vocab_size=2)


def test_real_ptb():
    root = shared_data() / "ptb"
    if not (root / "ptb.train.txt").is_file():
        pytest.skip(f"PTB not found at {root} (set ENAS_SHARED_DATA to the shared data directory)")
    c = load_corpus(root)
    assert len(c.vocab) == 10000 and c.vocab[:2] == ("<unk>", "<eos>")
    assert (c.train.numel(), c.valid.numel(), c.test.numel()) == (929589, 73760, 82430)
    assert load_corpus(root, vocab_size=10000).vocab == c.vocab


def test_pydoc_corpus_offline():
    c = load_corpus("pydoc")
    assert 1000 < len(c.vocab) <= 10000
    assert c.train.numel() > 50000 and c.valid.numel() > 1000 and c.test.numel() > 1000
    assert int(c.train.max()) < len(c.vocab)


def test_batchify_and_bptt():
    data = torch.arange(103)
    src = batchify(data, 4)
    assert src.shape == (25, 4) and src[:, 1].tolist() == list(range(25, 50))
    fixed = list(bptt_batches(src, 7, variable=False))
    assert [x.shape[0] for x, _ in fixed] == [7, 7, 7, 3]
    assert all(torch.equal(y, x + 1) for x, y in fixed)
    g = torch.Generator().manual_seed(0)
    lens = [x.shape[0] for x, _ in bptt_batches(batchify(torch.arange(5000), 2), 35, g)]
    assert min(lens[:-1]) >= 5 and 25 < sum(lens) / len(lens) < 40 and len(set(lens)) > 3
    with pytest.raises(TextDataError):
        batchify(torch.arange(3), 4)


def test_bptt_iterator_resume():
    src = batchify(torch.arange(3000), 3)
    straight = BPTTIterator(src, 20, seed=4)
    ref = [x for _ in range(2) for x, _ in straight]
    it = BPTTIterator(src, 20, seed=4)
    got = []
    for k, (x, _) in enumerate(it):
        got.append(x)
        if k == 5:
            state = it.state_dict()
            break
    resumed = BPTTIterator(src, 20, seed=999)
    resumed.load_state_dict(state)
    got += [x for x, _ in resumed] + [x for x, _ in resumed]
    assert len(got) == len(ref) and all(torch.equal(a, b) for a, b in zip(got, ref))
    assert resumed.epoch == 2 and resumed.pos == 0


# ---------------------------------------------------------------- procedures


def test_evaluate_uniform_and_reward():
    arch = random_archs(TINY, 1)[0]
    m = tiny_model(arch)
    with torch.no_grad():
        m.decoder.weight.zero_()  # tied: embeddings are zero too; logits are all 0 -> uniform
        m.decoder.bias.zero_()
    data = torch.randint(0, V, (500,), generator=torch.Generator().manual_seed(0))
    assert evaluate_ppl(m, data, arch, bptt=9, batch_size=4) == pytest.approx(V, rel=1e-5)
    x, y = tokens(), tokens(seed=1)
    assert float(reward(m, x, y, None, arch)) == pytest.approx(80.0 / V, rel=1e-5)
    assert m.training


def test_evaluate_ppl_exact_per_token():
    arch = random_archs(TINY, 1, seed=2)[0]
    m = tiny_model(arch).eval()
    src = batchify(torch.randint(0, V, (200,), generator=torch.Generator().manual_seed(1)), 4)
    with torch.no_grad():
        logits, _, _ = m(src[:-1], m.init_hidden(4))
        nll = torch.nn.functional.cross_entropy(logits.reshape(-1, V), src[1:].reshape(-1))
    assert evaluate_ppl(m, src, arch, bptt=7) == pytest.approx(math.exp(nll.item()), rel=1e-5)


def test_train_lm_tiny(tmp_path):
    write(tmp_path / "t.txt", "\n".join(f"the cat {'sat' if i % 2 else 'ran'} on mat {i % 3} ." for i in range(60)))
    corpus = load_corpus(tmp_path / "t.txt")
    arch = random_archs(TINY, 1)[0]
    torch.manual_seed(0)
    m = RNNModel(TINY, vocab_size=len(corpus.vocab), embed_size=16, hidden_size=16, arch=arch,
                 dropout_x=0.2, dropout_o=0.2)
    before = evaluate_ppl(m, corpus.valid, arch, 10, 2)
    rows = []
    out = train_lm(m, corpus, epochs=3, batch_size=4, bptt=10, lr=5.0, clip=0.25, weight_decay=1e-6,
                   lr_decay=0.9, lr_decay_start=2, asgd=True, asgd_start=3, ar_alpha=0.1, tar_beta=0.1,
                   eval_batch_size=2, test_batch_size=1, on_epoch=rows.append)
    assert len(rows) == 3 and out["history"] == rows
    switch = out["asgd_epoch"]
    assert switch in (1, 2)  # NT-ASGD may trigger after epoch 1; asgd_start=3 forces it after epoch 2
    for r in rows:
        expected = 5.0 * 0.9 ** max(0, min(r["epoch"], switch) - 2)
        assert r["lr"] == pytest.approx(expected) and r["asgd"] == (r["epoch"] > switch)
    assert math.isfinite(out["test_ppl"]) and out["valid_ppl"] < before
    assert out["valid_ppl"] == min(r["valid_ppl"] for r in rows)
    assert evaluate_ppl(m, corpus.valid, arch, 10, 2) == pytest.approx(out["valid_ppl"])  # best weights restored


def test_averaged_weights_swap():
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 1)
    opt = torch.optim.ASGD(lin.parameters(), lr=0.1, t0=0, lambd=0.0)
    for _ in range(3):
        opt.zero_grad()
        lin(torch.randn(4, 3)).pow(2).sum().backward()
        opt.step()
    current = lin.weight.detach().clone()
    with _averaged_weights(lin, opt):
        torch.testing.assert_close(lin.weight.detach(), opt.state[lin.weight]["ax"])
        assert not torch.equal(lin.weight.detach(), current)
    torch.testing.assert_close(lin.weight.detach(), current)


def test_perplexity_never_capped():
    assert perplexity(math.log(20000.0)) == pytest.approx(20000.0)
    assert perplexity(1e6) == math.inf


def test_lm_step_regularisation_on_raw_output():
    arch = random_archs(TINY, 1, seed=4)[0]
    m = tiny_model(arch).eval()
    x, y = tokens(), tokens(seed=1)
    h0 = m.init_hidden(3)
    loss, raw_loss, hidden = lm_step(m, x, y, h0, ar_alpha=0.5, tar_beta=2.0)
    logits, _, extras = m(x, h0)
    raw = extras["raw_output"]
    torch.testing.assert_close(raw_loss, torch.nn.functional.cross_entropy(logits.reshape(-1, V), y.reshape(-1)))
    expected = raw_loss + 0.5 * raw.pow(2).mean() + 2.0 * (raw[1:] - raw[:-1]).pow(2).mean()
    torch.testing.assert_close(loss, expected)
    assert not hidden.requires_grad
