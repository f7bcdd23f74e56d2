"""Where a cross-attention layer sits on the latent grid, and region masks resampled to it.

A layer only shows its flattened query length; its downsampling factor f (1, 2, 4, ...) and so its
spatial size follow from that and the latent size, since UNet downsamplers round up.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

_MAX_FACTOR = 1 << 12


def layer_factor(n_query: int, latent_size: tuple[int, int]) -> int:
    """Downsampling factor f (1, 2, 4, ...) with ``ceil(h/f) * ceil(w/f) == n_query``.

    UNet downsamplers (3x3 conv, stride 2, padding 1) round up, hence the ceil.
    """
    h, w = latent_size
    factor = 1
    while factor <= _MAX_FACTOR:
        if math.ceil(h / factor) * math.ceil(w / factor) == n_query:
            return factor
        if h <= factor and w <= factor:  # already 1x1: larger factors give the same length
            break
        factor *= 2
    raise ValueError(
        f"attention layer with {n_query} query positions matches no downsampling (f = 1, 2, 4, ...) of "
        f"the {h}x{w} latent; was the control built for this latent size?"
    )


def layer_size(n_query: int, latent_size: tuple[int, int]) -> tuple[int, int]:
    """Spatial (height, width) of a layer whose flattened query axis has ``n_query`` positions."""
    factor = layer_factor(n_query, latent_size)
    return math.ceil(latent_size[0] / factor), math.ceil(latent_size[1] / factor)


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A [H, W] mask resampled to ``size`` in float32.

    Shrinking averages the covered pixels (area), so a region aligned with the layer grid stays sharp
    instead of bleeding into its neighbours; growing is bilinear.
    """
    mask = mask.to(torch.float32)
    if tuple(mask.shape) == tuple(size):
        return mask
    shrinking = size[0] <= mask.shape[0] and size[1] <= mask.shape[1]
    if shrinking:
        return F.interpolate(mask[None, None], size=size, mode="area")[0, 0]
    return F.interpolate(mask[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
