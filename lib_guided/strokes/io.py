"""Read a painting (PIL image, array, tensor, file, bytes, base64 or data URL) into a ``StrokeImage``.

Text is image data, never a file path: the HTTP API hands us strings from anyone who can reach the
server, so a string is decoded as base64 (or a data URL) and nothing else. Files are read only from a
``pathlib.Path`` (the CLI, Python callers). Every string that is not image data gets one message, so an
error never tells whether some path exists on the server.

Work is bounded by the painting's pixel count, read from the file header before anything is decoded
(PIL's own bomb limit cannot be relied on: the WebUI's X/Y/Z plot switches it off for the process).
Encoded paintings above the cap are refused; in-memory ones (the UI's canvas) are scaled down to it.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from lib_guided.errors import GuidedInputError

# What PIL raises for corrupt, truncated or oversized image data.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)
NOT_IMAGE_DATA = (
    "not image data: send the image itself, base64-encoded (PNG, JPEG or WebP), optionally as a "
    "data:image/png;base64,... URL (text is never read as a file path)"
)
MAX_PAINTING_PIXELS = 4096 * 4096  # whatever the output size
MIN_PAINTING_CAP = 1024 * 1024  # a painting this big is always accepted


def painting_pixel_cap(width: int, height: int) -> int:
    """Largest painting (in pixels) accepted for a ``width`` x ``height`` output: four times the output's
    area (twice its side: more detail than the blurred stroke loss can see), at least 1024², at most 4096²."""
    return int(min(max(4 * int(width) * int(height), MIN_PAINTING_CAP), MAX_PAINTING_PIXELS))


@dataclass(frozen=True, eq=False)
class StrokeImage:
    """A painting: ``rgb`` uint8 HxWx3 and ``alpha`` bool HxW (True = painted)."""

    rgb: np.ndarray
    alpha: np.ndarray

    @property
    def height(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def width(self) -> int:
        return int(self.rgb.shape[1])

    @property
    def painted_count(self) -> int:
        return int(self.alpha.sum())


def load_strokes(source: Any, field: str = "strokes", max_pixels: int = MAX_PAINTING_PIXELS) -> StrokeImage:
    """Load a painting from a PIL image, array, tensor, ``Path``, raw bytes or base64 / data URL string.

    Encoded paintings over ``max_pixels`` are refused before decoding; in-memory ones are scaled down
    (nearest neighbour, so the colours stay the painted ones) to fit.
    """
    strokes = _load_any(source, field, int(max_pixels))
    if strokes.rgb.size == 0:
        raise GuidedInputError(field, "the painting has zero size")
    if not strokes.alpha.any():
        raise GuidedInputError(field, "the painting is empty (no opaque pixels)")
    return strokes


def as_strokes(strokes: Any, field: str = "strokes") -> StrokeImage:
    """A ``StrokeImage`` as it is; anything else through ``load_strokes``."""
    return strokes if isinstance(strokes, StrokeImage) else load_strokes(strokes, field)


def _load_any(source: Any, field: str, max_pixels: int) -> StrokeImage:
    if isinstance(source, StrokeImage):
        return _fit(_from_stroke_image(source, field), max_pixels)
    if isinstance(source, Image.Image):
        return _fit(_from_pil(source, field), max_pixels)
    if isinstance(source, torch.Tensor):
        return _fit(_from_tensor(source, field), max_pixels)
    if isinstance(source, np.ndarray):
        return _fit(_from_array(source, field), max_pixels)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(source), field, max_pixels)
    if isinstance(source, Path):
        return _from_file(source, field, max_pixels)
    if isinstance(source, str):
        return _from_string(source, field, max_pixels)
    raise GuidedInputError(
        field, f"unsupported painting type {type(source).__name__}; pass an image, array, Path or base64"
    )


def _fit(strokes: StrokeImage, max_pixels: int) -> StrokeImage:
    """Scale an in-memory painting down to at most ``max_pixels`` (nearest neighbour)."""
    h, w = strokes.height, strokes.width
    if h * w <= max_pixels:
        return strokes
    scale = (max_pixels / (h * w)) ** 0.5
    new_h, new_w = max(1, int(h * scale)), max(1, int(w * scale))
    rows = (np.arange(new_h) * h) // new_h
    cols = (np.arange(new_w) * w) // new_w
    return StrokeImage(
        np.ascontiguousarray(strokes.rgb[rows][:, cols]), np.ascontiguousarray(strokes.alpha[rows][:, cols])
    )


def _check_header_size(image: Image.Image, field: str, max_pixels: int) -> None:
    """Refuse from the header alone, before any pixel is decoded."""
    if image.width * image.height > max_pixels:
        raise GuidedInputError(
            field,
            f"the painting is {image.width}x{image.height} ({image.width * image.height:,} pixels); at most "
            f"{max_pixels:,} pixels are accepted for this output size (paint it at about the output's size)",
        )


def _from_stroke_image(strokes: StrokeImage, field: str) -> StrokeImage:
    rgb, alpha = np.asarray(strokes.rgb), np.asarray(strokes.alpha)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or alpha.shape != rgb.shape[:2]:
        raise GuidedInputError(field, f"malformed StrokeImage (rgb {rgb.shape}, alpha {alpha.shape})")
    return StrokeImage(np.ascontiguousarray(rgb, dtype=np.uint8), np.ascontiguousarray(alpha, dtype=bool))


def _from_string(text: str, field: str, max_pixels: int) -> StrokeImage:
    """Base64 or a base64 data URL; any string that is not image data gets the one NOT_IMAGE_DATA."""
    payload = text.strip()
    if payload[:5].lower() == "data:":
        header, _, payload = payload.partition(",")
        if ";base64" not in header.lower():
            raise GuidedInputError(field, NOT_IMAGE_DATA)
    # Tolerate line breaks and the URL-safe alphabet; anything else is not image data.
    compact = "".join(payload.split()).replace("-", "+").replace("_", "/")
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError):
        raise GuidedInputError(field, NOT_IMAGE_DATA) from None
    return _decode(lambda: Image.open(io.BytesIO(data)), field, max_pixels, NOT_IMAGE_DATA, "image data")


def _from_bytes(data: bytes, field: str, max_pixels: int) -> StrokeImage:
    return _decode(
        lambda: Image.open(io.BytesIO(data)),
        field,
        max_pixels,
        "could not decode image data (not a recognised image format)",
        "image data",
    )


def _from_file(path: Path, field: str, max_pixels: int) -> StrokeImage:
    if not path.is_file():
        raise GuidedInputError(field, f"image file not found: {str(path)!r}")
    return _decode(
        lambda: Image.open(path),
        field,
        max_pixels,
        f"could not decode image file {str(path)!r}",
        f"image file {str(path)!r}",
    )


def _decode(open_image, field: str, max_pixels: int, unrecognised: str, what: str) -> StrokeImage:
    """Open (header only), check the size, then decode the pixels."""
    try:
        image = open_image()
    except (UnidentifiedImageError, *_DECODE_ERRORS):
        raise GuidedInputError(field, unrecognised) from None
    with image:
        _check_header_size(image, field, max_pixels)
        try:
            image.load()
        except _DECODE_ERRORS as exc:
            raise GuidedInputError(field, f"could not decode {what} ({exc})") from None
        return _from_pil(image, field)


def _from_pil(image: Image.Image, field: str) -> StrokeImage:
    if image.width == 0 or image.height == 0:
        raise GuidedInputError(field, "the painting has zero size")
    try:
        image = ImageOps.exif_transpose(image)
        if image.mode in _WIDE_MODES:
            return _from_array(_wide_to_unit(image, field), field)
        values = np.array(image.convert("RGBA" if _pil_has_alpha(image) else "RGB"))
    except (OSError, ValueError) as exc:
        raise GuidedInputError(field, f"unsupported image (mode {image.mode}): {exc}") from None
    return _from_channels(values)


# One-channel modes wider than 8 bits: PIL's convert("RGB") clips them to 0/255 instead of scaling.
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _wide_to_unit(image: Image.Image, field: str) -> np.ndarray:
    """16-bit, 32-bit integer and float grey images as floats in [0, 1]."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode == "F":
        return values  # float images are expected in [0, 1]; _from_array says so otherwise
    if image.mode == "I" and values.size and values.max() > 65535:
        raise GuidedInputError(field, "32-bit integer images are not supported; save it as 8 or 16 bits")
    return values / 65535.0


def _pil_has_alpha(image: Image.Image) -> bool:
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return True
    return "transparency" in image.info


def _from_tensor(tensor: torch.Tensor, field: str) -> StrokeImage:
    data = tensor.detach().cpu()
    if data.ndim == 4:
        if data.shape[0] != 1:
            raise GuidedInputError(field, f"expected a single image, got a batch of {data.shape[0]}")
        data = data[0]
    if data.ndim != 3 or data.shape[0] not in (1, 3, 4):
        raise GuidedInputError(field, f"expected a tensor [3,H,W] or [1,3,H,W], got {list(tensor.shape)}")
    if data.is_floating_point():
        data = data.float()
    return _from_array(data.permute(1, 2, 0).numpy(), field)


def _from_array(array: np.ndarray, field: str) -> StrokeImage:
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise GuidedInputError(field, f"expected an array HxWx3 or HxWx4, got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise GuidedInputError(field, "the painting has zero size")
    values = _array_to_uint8(array, field)
    if values.shape[2] == 1:
        values = np.repeat(values, 3, axis=2)
    return _from_channels(values)


def _from_channels(values: np.ndarray) -> StrokeImage:
    """uint8 HxWx3 (all painted) or HxWx4 (painted where alpha >= 128)."""
    if values.shape[2] == 4:
        return StrokeImage(np.ascontiguousarray(values[..., :3]), values[..., 3] >= 128)
    return StrokeImage(np.ascontiguousarray(values), np.ones(values.shape[:2], dtype=bool))


def _array_to_uint8(array: np.ndarray, field: str) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise GuidedInputError(field, "the image contains NaN or infinite values")
        low, high = float(array.min()), float(array.max())
        if low < -1e-3 or high > 1.0 + 1e-3:
            raise GuidedInputError(
                field,
                f"float image values must lie in [0, 1], got [{low:.3g}, {high:.3g}] (use uint8 for 0..255)",
            )
        return np.clip(np.rint(array * 255.0), 0, 255).astype(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        if array.min() < 0 or array.max() > 255:
            raise GuidedInputError(field, "integer image values must lie in 0..255")
        return array.astype(np.uint8)
    raise GuidedInputError(field, f"unsupported array dtype {array.dtype}")
