"""Bring a painting and its colour masks to the output resolution (same aspect ratio required)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lib_guided.errors import GuidedInputError
from lib_guided.strokes.colors import parse_color
from lib_guided.strokes.io import as_strokes

ASPECT_TOLERANCE = 0.01


def resize_strokes(
    strokes: Any, width: int, height: int, background: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The stroke target at output size: ``(target [1,3,H,W] in [0,1], painted_mask [1,1,H,W])``.

    Unpainted pixels are 0 in the target and in the mask, so the loss can ignore them; with a
    ``background`` colour they become that colour and the mask is all ones.
    """
    strokes = as_strokes(strokes)
    width, height = _check_dimension(width, "width"), _check_dimension(height, "height")
    check_aspect(strokes.width, strokes.height, width, height)
    rgb = torch.tensor(strokes.rgb).permute(2, 0, 1)[None].float() / 255.0
    alpha = torch.tensor(strokes.alpha)[None, None].float()
    if background is not None:
        fill_rgb = parse_color(background, "background")
        fill = torch.tensor(fill_rgb, dtype=torch.float32).view(1, 3, 1, 1) / 255.0
        rgb = torch.where(alpha > 0, rgb, fill)
        return _resize_image(rgb, height, width).clamp(0.0, 1.0), torch.ones(1, 1, height, width)
    if bool(strokes.alpha.all()):
        return _resize_image(rgb, height, width).clamp(0.0, 1.0), torch.ones(1, 1, height, width)
    # Resize premultiplied colour so unpainted pixels do not bleed dark fringes into the strokes.
    coverage = _resize_image(alpha, height, width).clamp(0.0, 1.0)
    premultiplied = _resize_image(rgb * alpha, height, width)
    target = torch.where(coverage > 1e-6, premultiplied / coverage.clamp_min(1e-6), torch.zeros(()))
    return target.clamp(0.0, 1.0), coverage


def resize_masks(masks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Masks [K,H,W] at ``(height, width)``; downsampling gives coverage, sums stay at most 1."""
    if tuple(masks.shape[-2:]) == (height, width):
        return masks
    batch = masks[None]
    if height <= masks.shape[-2] and width <= masks.shape[-1]:
        resized = F.interpolate(batch, size=(height, width), mode="area")
    else:
        resized = _resize_image(batch, height, width)
    resized = resized[0].clamp(0.0, 1.0)
    # Convex resampling keeps sums <= 1 up to rounding; renormalise the rounding away.
    total = resized.sum(dim=0, keepdim=True)
    return torch.where(total > 1.0, resized / total, resized)


def check_aspect(src_width: int, src_height: int, dst_width: int, dst_height: int) -> None:
    """Raise a ``strokes`` error if the aspect ratios differ by more than ``ASPECT_TOLERANCE``."""
    source_ratio = src_width / src_height
    target_ratio = dst_width / dst_height
    if abs(source_ratio / target_ratio - 1.0) > ASPECT_TOLERANCE + 1e-9:
        raise GuidedInputError(
            "strokes",
            f"the painting's aspect ratio {source_ratio:.3f} ({src_width}x{src_height}) differs from the "
            f"output's {target_ratio:.3f} ({dst_width}x{dst_height}) by more than "
            f"{ASPECT_TOLERANCE:.0%}; crop or pad the painting to the output's shape",
        )


def _check_dimension(value: Any, field: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or int(value) <= 0:
        raise GuidedInputError(field, f"must be a positive integer, got {value!r}")
    return int(value)


def _resize_image(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if tuple(image.shape[-2:]) == (height, width):
        return image
    return F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
