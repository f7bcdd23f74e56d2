"""Read a painting (PIL image, array, tensor, file, bytes, base64 or data URL) into a ``StrokeImage``."""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from lib_guided.errors import GuidedInputError

_IMAGE_SUFFIX_RE = re.compile(r"\.(png|jpe?g|webp|bmp|gif|tiff?)$", re.IGNORECASE)
# What PIL raises for corrupt, truncated or oversized image data.
_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


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


def load_strokes(source: Any, field: str = "strokes") -> StrokeImage:
    """Load a painting from a PIL image, array, tensor, file path, raw bytes or base64 / data URL."""
    strokes = _load_any(source, field)
    if strokes.rgb.size == 0:
        raise GuidedInputError(field, "the painting has zero size")
    if not strokes.alpha.any():
        raise GuidedInputError(field, "the painting is empty (no opaque pixels)")
    return strokes


def as_strokes(strokes: Any, field: str = "strokes") -> StrokeImage:
    """A ``StrokeImage`` as it is; anything else through ``load_strokes``."""
    return strokes if isinstance(strokes, StrokeImage) else load_strokes(strokes, field)


def _load_any(source: Any, field: str) -> StrokeImage:
    if isinstance(source, StrokeImage):
        return _from_stroke_image(source, field)
    if isinstance(source, Image.Image):
        return _from_pil(source, field)
    if isinstance(source, torch.Tensor):
        return _from_tensor(source, field)
    if isinstance(source, np.ndarray):
        return _from_array(source, field)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return _from_bytes(bytes(source), field)
    if isinstance(source, Path):
        return _from_file(source, field)
    if isinstance(source, str):
        return _from_string(source, field)
    raise GuidedInputError(
        field, f"unsupported painting type {type(source).__name__}; pass an image, array, path or base64"
    )


def _from_stroke_image(strokes: StrokeImage, field: str) -> StrokeImage:
    rgb, alpha = np.asarray(strokes.rgb), np.asarray(strokes.alpha)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or alpha.shape != rgb.shape[:2]:
        raise GuidedInputError(field, f"malformed StrokeImage (rgb {rgb.shape}, alpha {alpha.shape})")
    return StrokeImage(np.ascontiguousarray(rgb, dtype=np.uint8), np.ascontiguousarray(alpha, dtype=bool))


def _from_string(text: str, field: str) -> StrokeImage:
    stripped = text.strip()
    if not stripped:
        raise GuidedInputError(field, "got an empty string instead of an image")
    if stripped[:5].lower() == "data:":
        return _from_bytes(_decode_data_url(stripped, field), field)
    if _is_existing_file(stripped):
        return _from_file(Path(stripped).expanduser(), field)
    if _IMAGE_SUFFIX_RE.search(stripped):
        # Base64 never contains '.', so this was meant as a path.
        raise GuidedInputError(field, f"image file not found: {stripped!r}")
    return _from_bytes(_decode_base64(stripped, field), field)


def _is_existing_file(text: str) -> bool:
    if len(text) > 4096:
        return False
    try:
        return Path(text).expanduser().is_file()
    except (OSError, ValueError):
        return False


def _decode_data_url(url: str, field: str) -> bytes:
    header, comma, payload = url.partition(",")
    if not comma:
        raise GuidedInputError(field, "malformed data URL (no ',' separating header and data)")
    if ";base64" not in header.lower():
        raise GuidedInputError(field, f"data URL is not base64-encoded ({header!r})")
    return _decode_base64(payload, field)


def _decode_base64(text: str, field: str) -> bytes:
    # Tolerate line breaks and the URL-safe alphabet; anything else is an error.
    compact = "".join(text.split()).replace("-", "+").replace("_", "/")
    try:
        data = base64.b64decode(compact, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise GuidedInputError(field, f"could not decode base64 image data ({exc})") from None
    if not data:
        raise GuidedInputError(field, "base64 image data is empty")
    return data


def _from_bytes(data: bytes, field: str) -> StrokeImage:
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except UnidentifiedImageError:
        raise GuidedInputError(field, "could not decode image data (not a recognised image format)") from None
    except _DECODE_ERRORS as exc:
        raise GuidedInputError(field, f"could not decode image data ({exc})") from None
    return _from_pil(image, field)


def _from_file(path: Path, field: str) -> StrokeImage:
    if not path.is_file():
        raise GuidedInputError(field, f"image file not found: {str(path)!r}")
    try:
        with Image.open(path) as image:
            image.load()
            return _from_pil(image, field)
    except UnidentifiedImageError:
        raise GuidedInputError(field, f"could not decode image file {str(path)!r}") from None
    except _DECODE_ERRORS as exc:
        raise GuidedInputError(field, f"could not read image file {str(path)!r} ({exc})") from None


def _from_pil(image: Image.Image, field: str) -> StrokeImage:
    if image.width == 0 or image.height == 0:
        raise GuidedInputError(field, "the painting has zero size")
    try:
        image = ImageOps.exif_transpose(image)
        values = np.array(image.convert("RGBA" if _pil_has_alpha(image) else "RGB"))
    except (OSError, ValueError) as exc:
        raise GuidedInputError(field, f"unsupported image (mode {image.mode}): {exc}") from None
    return _from_channels(values)


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
