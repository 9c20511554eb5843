"""Batched image augmentation on tensors: normalise, pad-and-crop, horizontal flip, cutout.

Every function works on a whole (N, C, H, W) batch on the batch's own device, with no Python loop over images.
Every random choice is drawn from the explicit ``generator`` argument, which must live on the same device as
the batch (``torch.Generator(device=x.device)``); the same generator state gives the same output.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _check_generator(x: torch.Tensor, generator: torch.Generator) -> None:
    if generator.device.type != x.device.type:
        raise ValueError(
            f"generator is on {generator.device} but the images are on {x.device}; "
            "make it with torch.Generator(device=x.device)"
        )


def _check_batch(x: torch.Tensor) -> None:
    if x.dim() != 4:
        raise ValueError(f"expected images of shape (N, C, H, W), got {tuple(x.shape)}")


def to_float(
    x: torch.Tensor, mean: torch.Tensor | Sequence[float], std: torch.Tensor | Sequence[float]
) -> torch.Tensor:
    """uint8 (N, C, H, W) -> float32 ``(x / 255 - mean) / std`` with per-channel mean/std in [0, 1] scale."""
    _check_batch(x)
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=x.device).reshape(1, -1, 1, 1)
    return (x.float() / 255.0 - mean_t) / std_t


def random_crop(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad each image by ``pad`` pixels and crop it back to H x W at an independent random offset."""
    _check_batch(x)
    if pad < 0:
        raise ValueError(f"pad must be >= 0, got {pad}")
    if pad == 0:
        return x
    _check_generator(x, generator)
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))  # (N, C, H + 2p, W + 2p), zeros
    # Offsets in [0, 2p] per image; the crop starts there in the padded image.
    offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=generator, device=x.device)
    rows = offsets[0, :, None] + torch.arange(h, device=x.device)  # (N, H)
    cols = offsets[1, :, None] + torch.arange(w, device=x.device)  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chans = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, chans, rows[:, None, :, None], cols[:, None, None, :]]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right independently with probability 0.5."""
    _check_batch(x)
    _check_generator(x, generator)
    chosen = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5  # (N,)
    return torch.where(chosen[:, None, None, None], x.flip(3), x)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero a ``size`` x ``size`` square (all channels) per image at a uniform random centre, clipped at the
    border (DeVries & Taylor, 2017). ``size`` 0 turns it off."""
    _check_batch(x)
    if size < 0:
        raise ValueError(f"cutout size must be >= 0, got {size}")
    if size == 0:
        return x
    _check_generator(x, generator)
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), generator=generator, device=x.device)
    cx = torch.randint(0, w, (n,), generator=generator, device=x.device)
    y0, x0 = cy - size // 2, cx - size // 2  # the square spans [y0, y0 + size) x [x0, x0 + size)
    ys = torch.arange(h, device=x.device)
    xs = torch.arange(w, device=x.device)
    in_y = (ys >= y0[:, None]) & (ys < y0[:, None] + size)  # (N, H)
    in_x = (xs >= x0[:, None]) & (xs < x0[:, None] + size)  # (N, W)
    mask = in_y[:, :, None] & in_x[:, None, :]  # (N, H, W)
    return x.masked_fill(mask[:, None], 0)


def augment(
    x: torch.Tensor,
    generator: torch.Generator,
    *,
    pad: int = 4,
    flip: bool = True,
    cutout_size: int = 0,
) -> torch.Tensor:
    """Pad-and-crop, horizontal flip, then cutout, in that order.

    Pass the normalised float batch (``to_float``), as ENAS does: the zero padding and the cutout square
    then equal the dataset's mean colour.
    """
    x = random_crop(x, pad, generator)
    if flip:
        x = random_flip(x, generator)
    return cutout(x, cutout_size, generator)
