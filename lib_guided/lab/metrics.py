"""The lab's image metrics: stroke faithfulness, Fréchet distance, SSIM and PSNR outside a mask.

All functions take float images [B, 3, H, W] in [0, 1] and are pure torch, so the tests can check their
identities on small tensors without a model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from lib_guided.strokes.painting import BlurPainting, gaussian_kernel1d


def faithfulness_mse(images: torch.Tensor, strokes: torch.Tensor) -> torch.Tensor:
    """Per-image ``MSE(f(image), f(strokes))`` with f the GradOP blur painting (lower = more faithful)."""
    paint = BlurPainting()
    return ((paint(images.float()) - paint(strokes.float())) ** 2).mean(dim=(1, 2, 3))


def feature_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, covariance) of [N, D] features, in float64 for a stable matrix square root."""
    x = features.double()
    mean = x.mean(0)
    centred = x - mean
    cov = centred.T @ centred / max(len(x) - 1, 1)
    return mean, cov


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp_min(0).sqrt()) @ vectors.T


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets [N, D] and [M, D].

    ``|mu_a - mu_b|^2 + tr(C_a + C_b - 2 (C_a^1/2 C_b C_a^1/2)^1/2)``; the symmetric form keeps every
    square root on a PSD matrix, so eigh is enough (no scipy).
    """
    mu_a, cov_a = feature_stats(a)
    mu_b, cov_b = feature_stats(b)
    root_a = _psd_sqrt(cov_a)
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    value = (mu_a - mu_b).square().sum() + torch.trace(cov_a) + torch.trace(cov_b) - 2 * cross
    return max(float(value), 0.0)


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-image SSIM with a Gaussian window (Wang et al. 2004 constants), over valid windows only."""
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    a, b = a.double(), b.double()
    channels = a.shape[1]
    g = gaussian_kernel1d(window, sigma, dtype=torch.float64)
    kernel = (g[:, None] * g[None, :]).expand(channels, 1, window, window)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, kernel, groups=channels)

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    score = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return score.mean(dim=(1, 2, 3)).float()


def masked_psnr(a: torch.Tensor, b: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR over the pixels where ``keep`` [B or 1, 1, H, W] is true (inf when they agree)."""
    keep = keep.to(torch.float64).expand(a.shape[0], 1, *a.shape[-2:])
    err = ((a.double() - b.double()) ** 2 * keep).sum(dim=(1, 2, 3))
    count = keep.sum(dim=(1, 2, 3)).clamp_min(1) * a.shape[1]
    mse = err / count
    return torch.where(mse > 0, 10 * torch.log10(1 / mse.clamp_min(1e-30)), torch.full_like(mse, math.inf))


def dilate(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow a [B, 1, H, W] mask by ``pixels`` in every direction (square structuring element)."""
    if pixels <= 0:
        return mask
    return F.max_pool2d(mask.float(), 2 * pixels + 1, stride=1, padding=pixels)
