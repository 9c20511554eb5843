"""REINFORCE pieces as pure tensor functions: moving-average baseline, policy loss, skip penalty."""

from __future__ import annotations

import torch


def ema_baselines(rewards: torch.Tensor, baseline: torch.Tensor, decay: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Update the moving-average baseline once per reward, in order, as the reference does.

    Returns the baseline *after* each update (the reference subtracts the just-updated baseline) and the
    final baseline. No host synchronisation: everything stays a tensor on the rewards' device.
    """
    out = []
    b = baseline
    for r in rewards.unbind(0):
        b = b - (1.0 - decay) * (b - r)
        out.append(b)
    return torch.stack(out), b


def policy_loss(log_prob: torch.Tensor, rewards: torch.Tensor, baselines: torch.Tensor,
                skip_kl: torch.Tensor | None = None, skip_weight: float = 0.0) -> torch.Tensor:
    """Mean over samples of -log pi(a) * (R - b), plus ``skip_weight`` times the skip KL penalty."""
    advantage = (rewards - baselines).detach()
    loss = -(log_prob * advantage).mean()
    if skip_kl is not None and skip_weight:
        loss = loss + skip_weight * skip_kl.mean()
    return loss
