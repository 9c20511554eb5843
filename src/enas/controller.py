"""The ENAS controller: an LSTM policy that walks any space's program (see ``enas.spaces.base.Step``).

It samples a batch of ``n`` architectures in one pass (the LSTM runs with batch ``n``), or scores given
actions (teacher forcing) with the same code. Input choices use additive attention over earlier anchors
(``v^T tanh(W1 h_j + W2 h)``); op choices use a per-vocabulary softmax head with a learned bias; logits are
divided by the temperature and squashed by ``tanh_constant * tanh(.)`` when those are set, as in the paper.
The controller owns no optimizer, data or loop.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from .spaces.base import Step


@dataclass
class Sample:
    actions: torch.Tensor  # [n, D] long
    log_prob: torch.Tensor  # [n] sum of log pi over decisions
    entropy: torch.Tensor  # [n] sum of per-decision entropies
    skip_kl: torch.Tensor  # [n] mean KL(p_skip || target) per layer with skips (0 without skips)
    skip_count: torch.Tensor  # [n] number of skips chosen


class Controller(nn.Module):
    def __init__(self, program: list[Step], *, hidden: int = 64, temperature: float = 0.0,
                 tanh_constant: float = 0.0, op_tanh_reduce: float = 1.0, skip_target: float = 0.4,
                 init_range: float = 0.1, op_bias: bool = True):
        super().__init__()
        if not op_bias:  # drop the space's op preferences (fixed and initial logit biases): every op starts equal
            program = [replace(s, bias=(), init_bias=()) if s.kind == "op" else s for s in program]
        self.program = list(program)
        self.hidden = hidden
        self.temperature = temperature
        self.tanh_constant = tanh_constant
        self.op_tanh_reduce = op_tanh_reduce
        self.skip_target = skip_target
        self.num_decisions = sum(s.size if s.kind == "skips" else 1 for s in program if s.kind in ("op", "input", "skips"))
        self.lstm = nn.LSTMCell(hidden, hidden, bias=False)
        self.g_emb = nn.Parameter(torch.empty(1, hidden))
        self.w_attn1 = nn.Linear(hidden, hidden, bias=False)
        self.w_attn2 = nn.Linear(hidden, hidden, bias=False)
        self.v_attn = nn.Linear(hidden, 1, bias=False)
        groups: dict[str, Step] = {}
        for s in program:
            if s.kind == "op" and s.group not in groups:
                groups[s.group] = s
        self.embed = nn.ParameterDict({g: nn.Parameter(torch.empty(s.size, hidden)) for g, s in groups.items()})
        self.head = nn.ParameterDict({g: nn.Parameter(torch.empty(hidden, s.size)) for g, s in groups.items()})
        self.head_bias = nn.ParameterDict({g: nn.Parameter(torch.zeros(s.size)) for g, s in groups.items()})
        for p in self.parameters():
            nn.init.uniform_(p, -init_range, init_range)
        with torch.no_grad():
            for g, s in groups.items():
                self.head_bias[g].copy_(torch.tensor(s.init_bias) if s.init_bias else torch.zeros(s.size))
        # fixed (not learned) biases, one buffer per distinct tuple
        self._fixed: dict[tuple[float, ...], torch.Tensor] = {}

    def _squash(self, logits: torch.Tensor, reduce: float = 1.0) -> torch.Tensor:
        if self.temperature > 0:
            logits = logits / self.temperature
        if self.tanh_constant > 0:
            logits = (self.tanh_constant / reduce) * torch.tanh(logits)
        return logits

    def _fixed_bias(self, bias: tuple[float, ...], device: torch.device) -> torch.Tensor:
        t = self._fixed.get(bias)
        if t is None or t.device != device:
            t = torch.tensor(bias, device=device)
            self._fixed[bias] = t
        return t

    def forward(self, n: int = 1, *, actions: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> Sample:
        """Sample ``n`` architectures, or score ``actions`` ([n, D]) when given."""
        if actions is not None:
            n = actions.shape[0]
        dev = self.g_emb.device
        h = torch.zeros(n, self.hidden, device=dev)
        c = torch.zeros(n, self.hidden, device=dev)
        g_in = self.g_emb.expand(n, -1)
        inputs = g_in
        anchors: list[torch.Tensor] = []
        keys: list[torch.Tensor] = []
        chosen: list[torch.Tensor] = []
        log_prob = torch.zeros(n, device=dev)
        entropy = torch.zeros(n, device=dev)
        skip_kl = torch.zeros(n, device=dev)
        skip_count = torch.zeros(n, device=dev)
        skip_layers = 0
        col = 0
        for step in self.program:
            if step.kind == "reset":
                anchors, keys = [], []
                continue
            h, c = self.lstm(inputs, (h, c))
            if step.kind == "anchor":
                inputs = g_in
            elif step.kind in ("op", "input"):
                if step.kind == "op":
                    logits = h @ self.head[step.group] + self.head_bias[step.group]
                    logits = self._squash(logits, self.op_tanh_reduce)
                    if step.bias:
                        logits = logits + self._fixed_bias(step.bias, dev)
                else:
                    k = torch.stack(keys[:step.size], dim=1)  # [n, size, H]
                    logits = self.v_attn(torch.tanh(k + self.w_attn2(h).unsqueeze(1))).squeeze(-1)
                    logits = self._squash(logits)
                    if step.distance_prior:
                        dist = torch.arange(step.size, 0, -1, device=dev, dtype=logits.dtype)
                        logits = logits - dist.pow(2) / 6.0
                logp = F.log_softmax(logits, dim=-1)
                if actions is None:
                    a = torch.multinomial(logp.exp(), 1, generator=generator).squeeze(1)
                else:
                    a = actions[:, col]
                col += 1
                chosen.append(a)
                log_prob = log_prob + logp.gather(1, a.unsqueeze(1)).squeeze(1)
                entropy = entropy - (logp.exp() * logp).sum(-1)
                if step.kind == "op":
                    inputs = self.embed[step.group][a]
                else:
                    inputs = torch.stack(anchors[:step.size], dim=1)[torch.arange(n, device=dev), a]
            elif step.kind == "skips":
                k = torch.stack(keys[:step.size], dim=1)
                logit = self._squash(self.v_attn(torch.tanh(k + self.w_attn2(h).unsqueeze(1))).squeeze(-1))
                p = torch.sigmoid(logit)  # [n, size]
                if actions is None:
                    bits = (torch.rand(p.shape, device=dev, generator=generator) < p).long()
                else:
                    bits = actions[:, col:col + step.size]
                col += step.size
                chosen.append(bits)
                b = bits.to(p.dtype)
                log_prob = log_prob + (b * F.logsigmoid(logit) + (1 - b) * F.logsigmoid(-logit)).sum(-1)
                entropy = entropy + F.binary_cross_entropy_with_logits(logit, p, reduction="none").sum(-1)
                t = self.skip_target
                kl = p * torch.log(p.clamp_min(1e-8) / t) + (1 - p) * torch.log((1 - p).clamp_min(1e-8) / (1 - t))
                skip_kl = skip_kl + kl.sum(-1)
                skip_layers += 1
                skip_count = skip_count + b.sum(-1)
                a_stack = torch.stack(anchors[:step.size], dim=1)
                inputs = (b.unsqueeze(-1) * a_stack).sum(1) / (1.0 + b.sum(-1, keepdim=True))
            else:
                raise ValueError(f"unknown program step {step.kind!r}")
            if step.anchor or step.kind == "anchor":
                anchors.append(h)
                keys.append(self.w_attn1(h))
                if step.kind != "anchor":
                    inputs = g_in
        acts = torch.cat([a.unsqueeze(1) if a.dim() == 1 else a for a in chosen], dim=1) if chosen else \
            torch.zeros(n, 0, dtype=torch.long, device=dev)
        if skip_layers:
            skip_kl = skip_kl / skip_layers
        return Sample(acts.long(), log_prob, entropy, skip_kl, skip_count)


class RandomController(nn.Module):
    """Uniform sampling over the same decisions (random search with weight sharing). No parameters to train."""

    def __init__(self, sizes: list[int]):
        super().__init__()
        self.register_buffer("sizes", torch.tensor(sizes, dtype=torch.long), persistent=False)
        self.num_decisions = len(sizes)

    def forward(self, n: int = 1, *, actions: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> Sample:
        dev = self.sizes.device
        if actions is None:
            u = torch.rand(n, len(self.sizes), device=dev, generator=generator)
            actions = (u * self.sizes).long().clamp_max(self.sizes - 1)
        n = actions.shape[0]
        logp = -torch.log(self.sizes.to(torch.float32)).sum().expand(n)
        z = torch.zeros(n, device=dev)
        return Sample(actions, logp.clone(), -logp.clone(), z, z.clone())
