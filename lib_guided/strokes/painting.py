"""Painting functions f: differentiable maps from an image to its "painting" (GradOP).

GradOP pushes the sampler towards the strokes by minimising ``MSE(f(decode(latent)), strokes)``.
``f`` removes detail the strokes cannot express: a Gaussian blur (the paper's default) or a median
filter followed by soft palette quantisation (the paper's "more accurate" variant). All functions
take images [B,C,H,W] in [0,1] on any device and dtype.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from lib_guided.errors import GuidedInputError
from lib_guided.strokes.colors import parse_color

REFERENCE_SIDE = 512
REFERENCE_KERNEL_SIZE = 35
REFERENCE_SIGMA = 7.0
REFERENCE_MEDIAN_SIZE = 5


def _odd_at_least_3(value: float) -> int:
    size = max(3, int(round(value)))
    return size if size % 2 == 1 else size + 1


def gaussian_kernel_size_for(
    height: int, width: int, size_at_512: int = REFERENCE_KERNEL_SIZE
) -> tuple[int, float]:
    """(kernel_size, sigma): ``size_at_512`` (the reference's 35, sigma = size / 5) at a 512 side,
    scaled with the image's shorter side."""
    side = min(int(height), int(width))
    if side <= 0:
        raise GuidedInputError("image", f"image size must be positive, got {height}x{width}")
    size = _odd_at_least_3(size_at_512 * side / REFERENCE_SIDE)
    return size, size * REFERENCE_SIGMA / REFERENCE_KERNEL_SIZE


def median_size_for(height: int, width: int) -> int:
    """Default median window: 5 at 512, scaled with the shorter side (odd, at least 3)."""
    return _odd_at_least_3(REFERENCE_MEDIAN_SIZE * min(int(height), int(width)) / REFERENCE_SIDE)


def gaussian_kernel1d(
    kernel_size: int, sigma: float, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd length ``kernel_size``."""
    _check_kernel(kernel_size, sigma)
    offsets = torch.arange(kernel_size, dtype=torch.float64) - (kernel_size - 1) / 2.0
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (kernel / kernel.sum()).to(device=device, dtype=dtype or torch.float32)


def _check_kernel(kernel_size: Any, sigma: Any) -> None:
    _check_odd_size(kernel_size, "kernel_size")
    if not _is_real(sigma) or not math.isfinite(sigma) or sigma <= 0:
        raise GuidedInputError("sigma", f"must be a positive number, got {sigma!r}")


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_odd_size(size: Any, field: str) -> None:
    # Odd windows keep the filter centred on the pixel, so the painting does not shift.
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1 or size % 2 == 0:
        raise GuidedInputError(field, f"must be a positive odd integer, got {size!r}")


def _check_temperature(temperature: Any) -> None:
    if not _is_real(temperature) or not math.isfinite(temperature) or temperature < 0:
        raise GuidedInputError("temperature", f"must be a finite number >= 0, got {temperature!r}")


def _check_image(image: Any, field: str = "image") -> torch.Tensor:
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise GuidedInputError(field, f"expected a tensor [B,C,H,W], got {shape}")
    if not image.is_floating_point():
        raise GuidedInputError(field, f"expected a floating-point tensor, got {image.dtype}")
    return image


def _pad_mode(pad: int, length: int) -> str:
    # Reflect padding needs pad < length; tiny images fall back to replicating the border.
    return "reflect" if pad < length else "replicate"


def gaussian_blur(image: torch.Tensor, kernel_size: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with reflect padding; the output has the input's size."""
    image = _check_image(image)
    _check_kernel(kernel_size, sigma)
    kernel_size, sigma = int(kernel_size), float(sigma)
    channels, pad = image.shape[1], kernel_size // 2
    kernel = gaussian_kernel1d(kernel_size, sigma, image.device, image.dtype)
    vertical = kernel.view(1, 1, kernel_size, 1).expand(channels, 1, kernel_size, 1)
    horizontal = kernel.view(1, 1, 1, kernel_size).expand(channels, 1, 1, kernel_size)
    out = F.pad(image, (0, 0, pad, pad), mode=_pad_mode(pad, image.shape[2]))
    out = F.conv2d(out, vertical, groups=channels)
    out = F.pad(out, (pad, pad, 0, 0), mode=_pad_mode(pad, image.shape[3]))
    return F.conv2d(out, horizontal, groups=channels)


def median_filter(image: torch.Tensor, size: int) -> torch.Tensor:
    """Per-channel median over ``size`` x ``size`` windows (reflect padding).

    Selecting the median is not differentiable, but gradients flow to the selected values.
    """
    image = _check_image(image)
    _check_odd_size(size, "median_size")
    size = int(size)
    if size == 1:
        return image
    batch, channels, height, width = image.shape
    pad = size // 2
    padded = F.pad(image, (pad, pad, 0, 0), mode=_pad_mode(pad, width))
    padded = F.pad(padded, (0, 0, pad, pad), mode=_pad_mode(pad, height))
    windows = F.unfold(padded, kernel_size=size)  # [B, C*size*size, H*W]
    windows = windows.view(batch, channels, size * size, height * width)
    return windows.median(dim=2).values.view(batch, channels, height, width)


def quantize_to_palette(image: torch.Tensor, palette_rgb: torch.Tensor, temperature: float) -> torch.Tensor:
    """Soft nearest-colour snapping: softmax over negative squared distances to the palette colours.

    ``temperature == 0`` gives hard snapping (no gradient to the image); small positive values
    approach it while staying differentiable.
    """
    image = _check_image(image)
    palette = _check_palette_tensor(palette_rgb, image)
    _check_temperature(temperature)
    # Half precision would underflow the softmax logits; compute in float32 and cast back.
    work = image.float() if image.dtype in (torch.float16, torch.bfloat16) else image
    colours = palette.to(work.dtype)
    # |x - p|^2 = |x|^2 - 2 x.p + |p|^2 avoids a [B,K,3,H,W] intermediate.
    cross = torch.einsum("bchw,kc->bkhw", work, colours)
    distances = work.square().sum(1, keepdim=True) - 2.0 * cross + colours.square().sum(1).view(1, -1, 1, 1)
    distances = distances.clamp_min(0.0)  # [B,K,H,W]
    if temperature == 0:
        weights = F.one_hot(distances.argmin(dim=1), colours.shape[0]).permute(0, 3, 1, 2).to(work.dtype)
    else:
        weights = torch.softmax(-distances / temperature, dim=1)
    quantized = torch.einsum("bkhw,kc->bchw", weights, colours)
    return quantized.to(image.dtype)


def _check_palette_tensor(palette: Any, image: torch.Tensor) -> torch.Tensor:
    if not isinstance(palette, torch.Tensor) or palette.ndim != 2 or palette.shape[1] != 3:
        shape = list(palette.shape) if isinstance(palette, torch.Tensor) else type(palette).__name__
        raise GuidedInputError("palette", f"expected a tensor [K,3] in [0,1], got {shape}")
    if palette.shape[0] == 0:
        raise GuidedInputError("palette", "the palette is empty")
    if image.shape[1] != 3:
        channels = image.shape[1]
        raise GuidedInputError("image", f"palette quantisation needs RGB images, got {channels} channels")
    return palette.to(device=image.device)


def median_quantize(
    image: torch.Tensor, palette_rgb: torch.Tensor, median_size: int, temperature: float
) -> torch.Tensor:
    """The paper's "more accurate" painting: median filter, then soft palette quantisation."""
    return quantize_to_palette(median_filter(image, median_size), palette_rgb, temperature)


def palette_tensor(palette: Sequence[Any] | torch.Tensor) -> torch.Tensor:
    """A [K,3] float tensor in [0,1] from a tensor or colours (hex, tuples, PaletteColor...)."""
    if isinstance(palette, torch.Tensor):
        return palette.float()
    if isinstance(palette, (str, bytes)) or not isinstance(palette, Sequence):
        raise GuidedInputError("palette", "expected a list of colours or a tensor [K,3]")
    rows = [parse_color(colour, f"palette[{i}]") for i, colour in enumerate(palette)]
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 3) / 255.0


@runtime_checkable
class PaintingFunction(Protocol):
    """Maps an image [B,3,H,W] in [0,1] to its painting, differentiably."""

    name: str

    def __call__(self, image: torch.Tensor) -> torch.Tensor: ...


class BlurPainting:
    """Gaussian blur; ``None`` sizes scale the reference 35/7 kernel with the image."""

    name = "blur"

    def __init__(
        self,
        kernel_size: int | None = None,
        sigma: float | None = None,
        size_at_512: int = REFERENCE_KERNEL_SIZE,
    ) -> None:
        if kernel_size is not None:
            _check_odd_size(kernel_size, "kernel_size")
        if sigma is not None:
            _check_kernel(1, sigma)
        self.kernel_size = kernel_size
        self.sigma = sigma
        self.size_at_512 = size_at_512  # used when neither size nor sigma is fixed

    def kernel_for(self, height: int, width: int) -> tuple[int, float]:
        """(kernel_size, sigma) for an image; a missing one follows the reference size/sigma ratio."""
        ratio = REFERENCE_KERNEL_SIZE / REFERENCE_SIGMA
        if self.kernel_size is None and self.sigma is None:
            return gaussian_kernel_size_for(height, width, self.size_at_512)
        if self.kernel_size is None:
            return _odd_at_least_3(self.sigma * ratio), float(self.sigma)
        sigma = self.sigma if self.sigma is not None else self.kernel_size / ratio
        return self.kernel_size, float(sigma)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        image = _check_image(image)
        return gaussian_blur(image, *self.kernel_for(image.shape[2], image.shape[3]))

    def __repr__(self) -> str:
        return (
            f"BlurPainting(kernel_size={self.kernel_size}, sigma={self.sigma}, "
            f"size_at_512={self.size_at_512})"
        )


class MedianQuantizePainting:
    """Median filter then soft quantisation to the painting's palette."""

    name = "median-quantize"

    def __init__(
        self,
        palette: Sequence[Any] | torch.Tensor,
        median_size: int | None = None,
        temperature: float = 0.02,
    ) -> None:
        self.palette = palette_tensor(palette)
        if self.palette.ndim != 2 or self.palette.shape[1] != 3 or self.palette.shape[0] == 0:
            shape = list(self.palette.shape)
            raise GuidedInputError("palette", f"expected a non-empty [K,3] palette, got {shape}")
        if median_size is not None:
            _check_odd_size(median_size, "median_size")
        _check_temperature(temperature)
        self.median_size = median_size
        self.temperature = float(temperature)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        image = _check_image(image)
        size = self.median_size or median_size_for(image.shape[2], image.shape[3])
        return median_quantize(image, self.palette, size, self.temperature)

    def __repr__(self) -> str:
        return (
            f"MedianQuantizePainting(colours={self.palette.shape[0]}, median_size={self.median_size}, "
            f"temperature={self.temperature})"
        )


_FACTORIES: dict[str, Callable[..., PaintingFunction]] = {
    "blur": BlurPainting,
    "median-quantize": MedianQuantizePainting,
}


def make_painting(name: str, **kwargs: Any) -> PaintingFunction:
    """Build a painting function by name: ``"blur"`` or ``"median-quantize"``."""
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else name
    factory = _FACTORIES.get(key) if isinstance(key, str) else None
    if factory is None:
        raise GuidedInputError(
            "painting", f"unknown painting function {name!r}; choose one of: {', '.join(_FACTORIES)}"
        )
    try:
        return factory(**kwargs)
    except TypeError as exc:
        raise GuidedInputError("painting", f"bad options for {key!r}: {exc}") from None


def stroke_loss(
    painting_fn: Callable[[torch.Tensor], torch.Tensor],
    image: torch.Tensor,
    target: torch.Tensor,
    weight_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """MSE between ``painting_fn(image)`` and the raw stroke ``target`` (the target is not painted).

    With ``weight_mask`` ([H,W] or [B|1,1,H,W], e.g. painted coverage) the mean runs over the
    weighted pixels only, so unpainted areas do not pull the image anywhere.
    """
    image = _check_image(image)
    target = _check_image(target, "target")
    if target.shape[1:] != image.shape[1:] or target.shape[0] not in (1, image.shape[0]):
        raise GuidedInputError(
            "target", f"shape {list(target.shape)} does not match the image {list(image.shape)}"
        )
    painted = painting_fn(image)
    squared_error = (painted - target.to(painted)) ** 2
    if weight_mask is None:
        return squared_error.mean()
    weights = _check_weight_mask(weight_mask, image).to(painted)
    weights = weights.expand(image.shape[0], 1, *image.shape[2:])
    # Per painted pixel and channel; clamp so an all-zero mask gives 0 rather than NaN.
    total = weights.sum() * image.shape[1]
    return (squared_error * weights).sum() / total.clamp_min(1e-8)


def _check_weight_mask(mask: Any, image: torch.Tensor) -> torch.Tensor:
    if not isinstance(mask, torch.Tensor):
        raise GuidedInputError("weight_mask", f"expected a tensor, got {type(mask).__name__}")
    if mask.ndim == 2:
        mask = mask[None, None]
    height, width = image.shape[2:]
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[2:] != (height, width):
        raise GuidedInputError(
            "weight_mask", f"expected [H,W] or [B,1,H,W] with H,W = {height},{width}, got {list(mask.shape)}"
        )
    if mask.shape[0] not in (1, image.shape[0]):
        batches = f"batch {mask.shape[0]} does not match the image's {image.shape[0]}"
        raise GuidedInputError("weight_mask", batches)
    return mask
