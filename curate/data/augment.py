"""Seeded batch augmentation in torch, shared by the FFCV loader and the in-memory trainer.

ffcv's own numba transforms draw from an unseeded per-thread generator; these draw from a
`torch.Generator`, so the same seed gives the same batches, bit for bit.
"""

from __future__ import annotations

import torch


def random_translate(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Random crop with `pad` pixels of zero padding (torchvision RandomCrop(size, padding=pad)).

    x : (B, C, H, W) any dtype. Returns (B, C, H, W) in channels_last memory order.
    """
    if pad <= 0:
        return x
    b, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device="cpu").to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen, device="cpu").to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)  # (B, H)
    cols = dx[:, None] + torch.arange(w, device=x.device)  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None]
    out = padded[batch, :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C): advanced dims first
    return out.permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Flip each image left-right with probability 1/2. x : (B, C, H, W)."""
    mask = (torch.rand(x.shape[0], generator=gen, device="cpu") < 0.5).to(x.device)
    return torch.where(mask[:, None, None, None], x.flip(3), x)


def augment(x: torch.Tensor, gen: torch.Generator, flip: bool, translate: int) -> torch.Tensor:
    if translate:
        x = random_translate(x, translate, gen)
    if flip:
        x = random_flip(x, gen)
    return x


def normalize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 or float (B, C, H, W) -> float32 (x - mean) / std, with mean, std of shape (C,)."""
    x = x.float()
    return (x - mean.view(1, -1, 1, 1).to(x.device)) / std.view(1, -1, 1, 1).to(x.device)
