"""Image quality numbers for reports and tests."""

from __future__ import annotations

import math

import torch


def psnr(a: torch.Tensor, b: torch.Tensor, max_value: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all elements (images in [0, max_value]); inf when equal."""
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    mse = float(((a.detach().double() - b.detach().double()) ** 2).mean())
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(max_value**2 / mse)
