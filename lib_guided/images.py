"""Image files <-> tensors ([1, 3, H, W] in [0, 1]), the PSNR reported beside reconstructions, masks shown."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lib_guided.errors import GuidedInputError


def image_to_tensor(path: str | Path) -> torch.Tensor:
    """An image file as [1, 3, H, W] float32 in [0, 1]."""
    try:
        array = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) / 255.0
    except (OSError, ValueError) as exc:
        raise GuidedInputError("image", f"cannot read {path}: {exc}") from None
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0)


def tensor_to_pil(image: torch.Tensor) -> Image.Image:
    """One [3, H, W] (or [1, 3, H, W]) image in [0, 1] as an 8-bit RGB PIL image."""
    image = image[0] if image.dim() == 4 else image
    array = (image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0).round()
    return Image.fromarray(array.astype(np.uint8))


def save_image(tensor: torch.Tensor, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    tensor_to_pil(tensor).save(path)


def psnr(a: torch.Tensor, b: torch.Tensor, max_value: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB over all elements (images in [0, max_value]); inf when equal."""
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")
    mse = float(((a.detach().double() - b.detach().double()) ** 2).mean())
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(max_value**2 / mse)


def mask_at_image_size(mask: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """A latent-resolution mask [B, 1, h, w] blown up to ``size`` (H, W) with hard edges, for showing it."""
    return torch.nn.functional.interpolate(mask.float(), size=tuple(int(s) for s in size), mode="nearest")
