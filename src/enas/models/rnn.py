"""Recurrent-space language models: the ENAS cell (supernet and fixed) and a plain LSTM baseline.

The cell, per time step (no biases, as in both references)::

    node 0:  [h, t] = [x_t * m_x, h_(t-1) * m_l] @ W_in;   s_0 = h_(t-1) + sigmoid(t) * (f_0(h) - h_(t-1))
    node i:  [h, t] = (s_j * m_l) @ W_(i,j),  j = inputs[i]; s_i = s_j + sigmoid(t) * (f_i(h) - s_j)
    h_t = mean(s_k for k in loose_ends)          (output="loose_ends": paper, TF reference)
        = mean(s_1 .. s_(N-1))                   (output="all": google-research enas_lm)

``m_x`` and ``m_l`` are per-sequence ("locked") dropout masks, fixed over time, as in enas_lm.

Bounds (issue #17; both off by default, on in the ``rnn-default`` search): ``state_clip > 0`` clamps ``h_t`` to
``[-state_clip, state_clip]`` at every step, so a cell of ReLU/identity nodes cannot grow its state without bound
across time steps (and across the BPTT segments and architectures the search carries it over);
``first_tanh`` makes node 0 a tanh node whatever the architecture says, as enas_lm does (its node 0 is not
searched). Without a clamp the highway update keeps a node inside the range of its input and its candidate, so
tanh/sigmoid nodes stay bounded but ReLU/identity nodes can amplify by ``|W|`` per node and per step.

Weight sharing: one matrix per *edge* ``j -> i`` (``cell.w["i_j"]``), independent of the activation, as the
paper's W_(l,j) (the TF code and enas_lm keep one per (edge, activation), 4x the memory). The supernet holds every
edge; a fixed model holds only its chosen edges under the same names, so
``fixed.load_state_dict({k: supernet_sd[k] for k in fixed.state_dict()})`` makes both compute the same function.

Regularisation follows AWD-LSTM / enas_lm (all rates are drop probabilities):
``dropout_e`` drops whole words of the embedding matrix, ``dropout_i`` is locked dropout on the embedded
input, ``dropout_x`` masks x_t at the cell input, ``dropout_l`` masks every node's input (and h_(t-1)),
``dropout_o`` is locked dropout on the cell output before the decoder. Every mask is drawn from the
``generator`` given to ``forward`` (torch's default generator when None), which must live on the model's device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..spaces.rnn import RNNArch, RNNSpace, loose_ends, validate

ACTIVATION_FNS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "identity": lambda h: h,
    "sigmoid": torch.sigmoid,
}
OUTPUTS = ("loose_ends", "all")


def edge_key(i: int, j: int) -> str:
    return f"{i}_{j}"


def _keep_mask(shape: tuple[int, ...], p: float, like: torch.Tensor,
               generator: torch.Generator | None) -> torch.Tensor:
    """Inverted-dropout mask: 0 with probability ``p``, else ``1/(1-p)``."""
    keep = 1.0 - p
    u = torch.rand(shape, generator=generator, device=like.device, dtype=like.dtype)
    return (u < keep).to(like.dtype) / keep


class RNNCell(nn.Module):
    """The ENAS recurrent cell; ``edges=None`` holds every edge (supernet)."""

    def __init__(self, space: RNNSpace, embed_size: int, hidden_size: int, edges: list[tuple[int, int]] | None,
                 output: str = "loose_ends", state_clip: float = 0.0, first_tanh: bool = False):
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output: expected one of {', '.join(OUTPUTS)}, got {output!r}")
        if not state_clip >= 0:
            raise ValueError(f"state_clip: must be >= 0 (0 = off), got {state_clip}")
        self.space, self.embed_size, self.hidden_size, self.output = space, embed_size, hidden_size, output
        self.state_clip, self.first_tanh = float(state_clip), bool(first_tanh)
        if edges is None:
            edges = [(i, j) for i in range(1, space.num_nodes) for j in range(i)]
        self.w_in = nn.Parameter(torch.empty(embed_size + hidden_size, 2 * hidden_size))
        self.w = nn.ParameterDict({edge_key(i, j): nn.Parameter(torch.empty(hidden_size, 2 * hidden_size))
                                   for i, j in edges})

    def output_nodes(self, arch: RNNArch) -> list[int]:
        if self.output == "all" and len(arch.activations) > 1:
            return list(range(1, len(arch.activations)))
        return loose_ends(arch)

    def forward(self, x: torch.Tensor, h: torch.Tensor, arch: RNNArch,
                mask_x: torch.Tensor | None = None, mask_l: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """x [T,B,E], h [B,H] -> (outputs [T,B,H], last hidden [B,H])."""
        e, hs = self.embed_size, self.hidden_size
        if mask_x is not None:
            x = x * mask_x
        xw = x @ self.w_in[:e]  # [T,B,2H]: the input part of node 0, for every step at once
        w_h = self.w_in[e:]
        ws = [None] + [self.w[edge_key(i, arch.inputs[i])] for i in range(1, len(arch.inputs))]
        fns = [ACTIVATION_FNS[a] for a in arch.activations]
        if self.first_tanh:
            fns[0] = torch.tanh
        clip = self.state_clip
        out_nodes = self.output_nodes(arch)
        outputs = []
        for t in range(x.shape[0]):
            ht = xw[t] + (h if mask_l is None else h * mask_l) @ w_h
            nodes = [_highway(ht, h, fns[0], hs)]
            for i in range(1, len(fns)):
                prev = nodes[arch.inputs[i]]
                ht = (prev if mask_l is None else prev * mask_l) @ ws[i]
                nodes.append(_highway(ht, prev, fns[i], hs))
            h = nodes[out_nodes[0]] if len(out_nodes) == 1 else torch.stack([nodes[k] for k in out_nodes]).mean(0)
            if clip > 0:  # the state carried to the next step is bounded, whatever the cell's activations
                h = h.clamp(-clip, clip)
            outputs.append(h)
        return torch.stack(outputs), h


def _highway(ht: torch.Tensor, prev: torch.Tensor, fn, hs: int) -> torch.Tensor:
    c = torch.sigmoid(ht[:, hs:])
    return prev + c * (fn(ht[:, :hs]) - prev)


class _LMBase(nn.Module):
    """Embedding (with word dropout), locked dropouts and the (optionally tied) decoder shared by both LMs."""

    def __init__(self, *, vocab_size: int, embed_size: int, hidden_size: int, dropout_e: float, dropout_i: float,
                 dropout_o: float, tie_weights: bool, init_range: float):
        super().__init__()
        if tie_weights and embed_size != hidden_size:
            raise ValueError(f"tie_weights needs embed_size == hidden_size, got {embed_size} and {hidden_size}")
        for name, p in (("dropout_e", dropout_e), ("dropout_i", dropout_i), ("dropout_o", dropout_o)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name}: must be in [0, 1), got {p}")
        self.vocab_size, self.embed_size, self.hidden_size = vocab_size, embed_size, hidden_size
        self.dropout_e, self.dropout_i, self.dropout_o = dropout_e, dropout_i, dropout_o
        self.init_range = init_range
        self.encoder = nn.Embedding(vocab_size, embed_size)
        self.decoder = nn.Linear(hidden_size, vocab_size)
        if tie_weights:
            self.decoder.weight = self.encoder.weight

    def embed(self, tokens: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """tokens [T,B] -> [T,B,E] with word dropout (whole rows of the embedding) and locked input dropout."""
        w = self.encoder.weight
        emb = F.embedding(tokens, w)
        if self.training and self.dropout_e > 0:
            row = _keep_mask((self.vocab_size,), self.dropout_e, w, generator)
            emb = emb * row[tokens].unsqueeze(-1)
        if self.training and self.dropout_i > 0:
            emb = emb * _keep_mask((1, tokens.shape[1], self.embed_size), self.dropout_i, emb, generator)
        return emb

    def decode(self, raw: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, dict]:
        dropped = raw
        if self.training and self.dropout_o > 0:
            dropped = raw * _keep_mask((1, raw.shape[1], raw.shape[2]), self.dropout_o, raw, generator)
        return self.decoder(dropped), {"raw_output": raw, "dropped_output": dropped}


class RNNModel(_LMBase):
    """ENAS recurrent-cell language model; ``arch=None`` builds the supernet (every edge, shared).

    ``forward(tokens [T,B], hidden [B,H], arch=None, *, generator=None) -> (logits [T,B,V], hidden [B,H], extras)``
    with ``extras = {"raw_output": [T,B,H], "dropped_output": [T,B,H]}`` for activation regularisation.
    """

    def __init__(self, space: RNNSpace, *, vocab_size: int, embed_size: int, hidden_size: int,
                 arch: RNNArch | None = None, dropout_e: float = 0.1, dropout_i: float = 0.2,
                 dropout_x: float = 0.75, dropout_l: float = 0.25, dropout_o: float = 0.75,
                 tie_weights: bool = True, init_range: float = 0.04, output: str = "loose_ends",
                 state_clip: float = 0.0, first_tanh: bool = False):
        super().__init__(vocab_size=vocab_size, embed_size=embed_size, hidden_size=hidden_size,
                         dropout_e=dropout_e, dropout_i=dropout_i, dropout_o=dropout_o,
                         tie_weights=tie_weights, init_range=init_range)
        for name, p in (("dropout_x", dropout_x), ("dropout_l", dropout_l)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name}: must be in [0, 1), got {p}")
        errors = space.check()
        if arch is not None:
            errors += validate(arch, space)
        if errors:
            raise ValueError("; ".join(errors))
        self.space, self.arch = space, arch
        self.dropout_x, self.dropout_l = dropout_x, dropout_l
        edges = None if arch is None else [(i, arch.inputs[i]) for i in range(1, space.num_nodes)]
        self.cell = RNNCell(space, embed_size, hidden_size, edges, output, state_clip, first_tanh)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in self.parameters():
            nn.init.uniform_(p, -self.init_range, self.init_range)
        nn.init.zeros_(self.decoder.bias)

    def init_hidden(self, batch: int, device: torch.device | str | None = None) -> torch.Tensor:
        return torch.zeros(batch, self.hidden_size, device=device)

    def _resolve_arch(self, arch: RNNArch | None) -> RNNArch:
        if self.arch is None:
            if arch is None:
                raise ValueError("this RNNModel is a supernet (built with arch=None): pass arch= to forward")
            if len(arch.inputs) != self.space.num_nodes:
                raise ValueError(f"arch has {len(arch.inputs)} nodes, the supernet {self.space.num_nodes}")
            return arch
        if arch is not None and arch != self.arch:
            raise ValueError("this RNNModel is fixed to one architecture; forward got a different arch")
        return self.arch

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor, arch: RNNArch | None = None, *,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
        arch = self._resolve_arch(arch)
        emb = self.embed(tokens, generator)  # [T,B,E]
        b = tokens.shape[1]
        mask_x = mask_l = None
        if self.training and self.dropout_x > 0:
            mask_x = _keep_mask((b, self.embed_size), self.dropout_x, emb, generator)
        if self.training and self.dropout_l > 0:
            mask_l = _keep_mask((b, self.hidden_size), self.dropout_l, emb, generator)
        raw, hidden = self.cell(emb, hidden, arch, mask_x, mask_l)
        logits, extras = self.decode(raw, generator)
        return logits, hidden, extras


class LSTMModel(_LMBase):
    """A plain (stacked) LSTM language model with the same embedding, dropouts and tying, for a fair baseline.

    ``hidden`` is a tuple with one ``(h [1,B,H_l], c [1,B,H_l])`` pair per layer; with tying, the last layer's
    size is ``embed_size`` (as AWD-LSTM). ``dropout_l`` is locked dropout between layers and ``dropout_w`` is
    DropConnect on the hidden-to-hidden weights (AWD's weight drop). ``arch`` is accepted and ignored.
    """

    def __init__(self, *, vocab_size: int, embed_size: int, hidden_size: int, num_layers: int = 1,
                 dropout_e: float = 0.1, dropout_i: float = 0.2, dropout_l: float = 0.25, dropout_o: float = 0.4,
                 dropout_w: float = 0.0, tie_weights: bool = True, init_range: float = 0.04):
        if tie_weights and num_layers == 1 and embed_size != hidden_size:
            raise ValueError(f"tie_weights needs embed_size == hidden_size, got {embed_size} and {hidden_size}")
        out_size = embed_size if tie_weights else hidden_size
        super().__init__(vocab_size=vocab_size, embed_size=embed_size, hidden_size=out_size,
                         dropout_e=dropout_e, dropout_i=dropout_i, dropout_o=dropout_o,
                         tie_weights=tie_weights, init_range=init_range)
        self.dropout_l, self.dropout_w, self.num_layers = dropout_l, dropout_w, num_layers
        sizes = [embed_size] + [hidden_size] * (num_layers - 1) + [out_size]
        self.rnns = nn.ModuleList(nn.LSTM(sizes[k], sizes[k + 1]) for k in range(num_layers))
        for p in self.parameters():
            nn.init.uniform_(p, -init_range, init_range)
        nn.init.zeros_(self.decoder.bias)

    def init_hidden(self, batch: int, device: torch.device | str | None = None) -> tuple:
        return tuple((torch.zeros(1, batch, r.hidden_size, device=device),
                      torch.zeros(1, batch, r.hidden_size, device=device)) for r in self.rnns)

    def _run(self, rnn: nn.LSTM, x: torch.Tensor, h: tuple, generator: torch.Generator | None):
        if not (self.training and self.dropout_w > 0):
            return rnn(x, h)
        w = rnn.weight_hh_l0
        params = {n: p for n, p in rnn.named_parameters()}
        params["weight_hh_l0"] = w * _keep_mask(tuple(w.shape), self.dropout_w, w, generator)
        return torch.func.functional_call(rnn, params, (x, h))

    def forward(self, tokens: torch.Tensor, hidden: tuple, arch: object = None, *,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, tuple, dict]:
        x = self.embed(tokens, generator)
        new_hidden = []
        for k, rnn in enumerate(self.rnns):
            x, h = self._run(rnn, x, hidden[k], generator)
            new_hidden.append(h)
            if k < self.num_layers - 1 and self.training and self.dropout_l > 0:
                x = x * _keep_mask((1, x.shape[1], x.shape[2]), self.dropout_l, x, generator)
        logits, extras = self.decode(x, generator)
        return logits, tuple(new_hidden), extras


def count_parameters(model: nn.Module) -> int:
    """Number of distinct trainable scalars (tied weights counted once)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def lstm_params(vocab_size: int, size: int) -> int:
    """Parameters of a one-layer tied ``LSTMModel`` with embedding = hidden = ``size``: the embedding (also the
    decoder's weight), the decoder's bias and ``nn.LSTM``'s four gates with both biases."""
    return vocab_size * size + vocab_size + 8 * size * size + 8 * size


def matching_lstm(target: int, vocab_size: int, net, *, max_size: int = 16384) -> LSTMModel:
    """The honest recurrent baseline: a one-layer tied LSTM language model whose parameter count is the closest
    to ``target`` (the cell's), with the cell's embedding dropout, input dropout, output dropout and init range
    (``net``: a ``NetConfig``). Embedding and hidden size are both the LSTM's size (tying needs it)."""
    if target < lstm_params(vocab_size, 1):
        raise ValueError(f"no tied LSTM has as few as {target} parameters with a vocabulary of {vocab_size}")
    size = 1
    while size < max_size and lstm_params(vocab_size, size + 1) <= target:
        size += 1
    if size < max_size and (abs(lstm_params(vocab_size, size + 1) - target)
                            < abs(lstm_params(vocab_size, size) - target)):
        size += 1
    return LSTMModel(vocab_size=vocab_size, embed_size=size, hidden_size=size, num_layers=1,
                     dropout_e=net.dropout_e, dropout_i=net.dropout_i, dropout_l=net.dropout_l,
                     dropout_o=net.dropout_o, init_range=net.init_range)
