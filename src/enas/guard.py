"""Skipping non-finite training steps without reading the device every step.

A step whose loss or gradient norm is not finite must not touch the weights. Deciding that on the host costs
one host-device synchronisation per step (``bool(torch.isfinite(...))``), which stalls a GPU's launch queue.
Here the decision stays on the device:

* ``StepGuard.check(loss, norm)`` writes a 0/1 flag into ``guard.found_inf``; the shared-weight and final
  optimizers are **fused** SGD (``build.sgd``), whose kernel skips the whole update, momentum buffers
  included, when that flag is set (the mechanism ``torch.amp.GradScaler`` uses for fused optimizers);
* the consecutive and total skip counters are device tensors too;
* ``StepGuard.sync()`` reads them at points where the loop reads the device anyway (a log interval, a
  checkpoint, the end of an epoch): it logs the steps skipped since the last read and raises
  ``NonFiniteError`` when ``max_run`` or more were skipped in a row at any point since then.

The cost: the error is raised at the first read after the limit is reached (at most ``run.log_every`` steps
late), not at the step itself; nothing bad reaches the weights in the meantime.
"""

from __future__ import annotations

import logging

import torch

from .rundir import NonFiniteError

log = logging.getLogger("enas")


class StepGuard:
    """Device-side bookkeeping of skipped steps (see the module docstring)."""

    def __init__(self, device: torch.device, max_run: int, hint: str):
        self.max_run = max_run
        self.hint = hint  # the settings to suggest in the error message
        self.found_inf = torch.zeros(1, device=device)  # read by the fused optimizer's step
        # consecutive skips now, the longest run since the last sync, total skips
        self.counts = torch.zeros(3, device=device)
        self.total = 0  # host copy of counts[2] as of the last sync

    def check(self, loss: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
        """Flag this step (a 0-dim 0./1. tensor on the device, 1. = skip) and count it. No host sync."""
        bad = (~(torch.isfinite(norm) & torch.isfinite(loss.detach()))).float()
        self.found_inf.copy_(bad.reshape(1))
        c = self.counts
        run = (c[0] + 1) * bad
        c.copy_(torch.stack([run, torch.maximum(c[1], run), c[2] + bad]))
        return bad

    def sync(self, where: str, last_good: str) -> int:
        """Read the counters (one sync); log new skips; raise ``NonFiniteError`` past the limit. Returns the
        number of steps skipped since the previous sync."""
        run, longest, total = (int(v) for v in self.counts.tolist())
        new = total - self.total
        self.total = total
        self.counts[1] = run  # the longest run restarts from the current one
        if new:
            log.warning("%d non-finite step(s) skipped (%s; %d in a row now)", new, where, run)
        if longest >= self.max_run:
            raise NonFiniteError(f"{longest} consecutive non-finite steps; stopping without saving bad weights "
                                 f"(last good checkpoint: {last_good}). Try a lower {self.hint}")
        return new

    def state_dict(self) -> dict:
        return {"counts": self.counts.cpu()}

    def load_checkpoint(self, state: dict) -> None:
        """The counters from a run's checkpoint (``state["guard"]``, or the host integers ``nonfinite_run`` /
        ``nonfinite_total`` of a checkpoint written before the guard)."""
        if "guard" in state:
            counts = state["guard"]["counts"]
        else:
            run, total = state.get("nonfinite_run", 0), state.get("nonfinite_total", 0)
            counts = torch.tensor([run, run, total], dtype=self.counts.dtype)
        self.counts.copy_(counts.to(self.counts.device))
        self.total = int(counts[2])


def skip_mask(bad: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``value`` where the step was kept, 0 where it was skipped (non-finite values do not leak through)."""
    return torch.where(bad.bool(), torch.zeros_like(value), value)


__all__ = ["StepGuard", "skip_mask"]
