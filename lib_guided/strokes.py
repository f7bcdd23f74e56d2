"""Stroke paintings: loading, palette extraction, snapping to flat regions, masks, user palettes.

A painting arrives as a browser-canvas PNG (anti-aliased brush edges), an uploaded PNG/JPEG (JPEG
noise and ringing), an RGBA image whose transparent pixels mean "no stroke here", or a base64 string
from the HTTP API. Everything here is numpy/PIL on the CPU except the torch tensors handed to the
sampler (``colour_masks`` and ``resize_strokes``).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import numbers
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from lib_guided.errors import GuidedInputError

RGB = tuple[int, int, int]

DEFAULT_TOLERANCE = 24.0
MAX_WEIGHT = 10.0
ASPECT_TOLERANCE = 0.01

_HEX_RE = re.compile(r"#([0-9a-f]{3}|[0-9a-f]{6})", re.IGNORECASE)
_RGB_FUNC_RE = re.compile(r"rgb\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)", re.IGNORECASE)
_IMAGE_SUFFIX_RE = re.compile(r"\.(png|jpe?g|webp|bmp|gif|tiff?)$", re.IGNORECASE)
_COLOUR_FORMATS = "use '#rrggbb', '#rgb', 'rgb(r, g, b)' or an (r, g, b) tuple of ints 0..255"


# --------------------------------------------------------------------------------------------------
# Colours


def parse_color(value: Any, field: str = "color") -> RGB:
    """Parse ``#rrggbb``, ``#rgb``, ``rgb(r,g,b)``, an (r, g, b) sequence or a palette object."""
    if isinstance(value, (PaletteColor, BoundRegion, PaletteEntry)):
        return value.rgb
    if isinstance(value, str):
        return _parse_color_string(value, field)
    if isinstance(value, (tuple, list, np.ndarray)):
        return _parse_color_sequence(value, field)
    raise GuidedInputError(field, f"could not parse colour {value!r}; {_COLOUR_FORMATS}")


def _parse_color_string(value: str, field: str) -> RGB:
    text = value.strip()
    hex_match = _HEX_RE.fullmatch(text)
    if hex_match:
        digits = hex_match.group(1)
        if len(digits) == 3:
            digits = "".join(c * 2 for c in digits)
        return (int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16))
    func_match = _RGB_FUNC_RE.fullmatch(text)
    if func_match:
        return _parse_color_sequence([int(g) for g in func_match.groups()], field)
    raise GuidedInputError(field, f"could not parse colour {value!r}; {_COLOUR_FORMATS}")


def _parse_color_sequence(value: Sequence[Any] | np.ndarray, field: str) -> RGB:
    items = list(np.asarray(value).ravel()) if isinstance(value, np.ndarray) else list(value)
    if len(items) != 3:
        raise GuidedInputError(field, f"a colour needs 3 components, got {len(items)}; {_COLOUR_FORMATS}")
    channels = []
    for item in items:
        if isinstance(item, (bool, np.bool_)) or not isinstance(item, numbers.Real):
            raise GuidedInputError(field, f"could not parse colour {value!r}; {_COLOUR_FORMATS}")
        number = float(item)
        if not number.is_integer() or not 0 <= number <= 255:
            raise GuidedInputError(field, f"colour components must be integers 0..255, got {value!r}")
        channels.append(int(number))
    return (channels[0], channels[1], channels[2])


def to_hex(rgb: Sequence[int]) -> str:
    """``(208, 48, 48) -> "#d03030"`` (lower case)."""
    r, g, b = parse_color(tuple(rgb), "color")
    return f"#{r:02x}{g:02x}{b:02x}"


def _colour_distance(colours: np.ndarray, centre: np.ndarray) -> np.ndarray:
    return np.sqrt(((colours - centre) ** 2).sum(axis=-1))


def _distance_to_segment(colours: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Distance of each colour to the RGB segment start..end (where anti-aliased blends lie)."""
    direction = end - start
    length_sq = float(direction @ direction)
    if length_sq == 0.0:
        return _colour_distance(colours, start)
    t = np.clip(((colours - start) @ direction) / length_sq, 0.0, 1.0)
    return _colour_distance(colours, start + t[..., None] * direction)


# --------------------------------------------------------------------------------------------------
# Loading


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
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
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
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError) as exc:
        raise GuidedInputError(field, f"could not read image file {str(path)!r} ({exc})") from None


def _from_pil(image: Image.Image, field: str) -> StrokeImage:
    if image.width == 0 or image.height == 0:
        raise GuidedInputError(field, "the painting has zero size")
    try:
        image = ImageOps.exif_transpose(image)
        if _pil_has_alpha(image):
            rgba = np.array(image.convert("RGBA"))
            return StrokeImage(np.ascontiguousarray(rgba[..., :3]), rgba[..., 3] >= 128)
        rgb = np.array(image.convert("RGB"))
    except (OSError, ValueError) as exc:
        raise GuidedInputError(field, f"unsupported image (mode {image.mode}): {exc}") from None
    return StrokeImage(rgb, np.ones(rgb.shape[:2], dtype=bool))


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


def _as_strokes(strokes: Any, field: str = "strokes") -> StrokeImage:
    return strokes if isinstance(strokes, StrokeImage) else load_strokes(strokes, field)


# --------------------------------------------------------------------------------------------------
# Palette extraction


@dataclass(frozen=True)
class PaletteColor:
    """A dominant colour of a painting; ``fraction`` is its share of the painted pixels."""

    rgb: RGB
    hex: str
    fraction: float


def extract_palette(
    strokes: Any,
    tolerance: float = DEFAULT_TOLERANCE,
    min_fraction: float = 0.002,
    max_colors: int = 32,
) -> list[PaletteColor]:
    """The painting's dominant colours, sorted by area (largest first).

    Colours are seeded from "flat" pixels only (3x3 neighbourhood spread below ``tolerance / 2``),
    so anti-aliased edges and JPEG ringing cannot start a colour of their own. Non-flat pixels that
    are neither near a colour nor a blend of two colours (e.g. thin lines) may seed more colours.
    Clusters covering less than ``min_fraction`` of the painted pixels are dropped as specks.
    """
    strokes = _as_strokes(strokes)
    _check_tolerance(tolerance)
    if not 0.0 <= min_fraction < 1.0:
        raise GuidedInputError("min_fraction", f"must lie in [0, 1), got {min_fraction}")
    painted = strokes.alpha
    total = int(painted.sum())
    min_count = max(1.0, min_fraction * total)
    flat = painted & (_local_spread(strokes) <= tolerance / 2.0)

    core_colours, core_weights = _unique_colours(strokes.rgb[flat])
    # Flat pixels near an edge are slightly fewer than a region's area, hence the lenient threshold.
    centres = _greedy_clusters(core_colours, core_weights, tolerance, 0.5 * min_count, max_colors)
    edge_colours, edge_weights = _unique_colours(strokes.rgb[painted & ~flat])
    centres = _add_unexplained_clusters(centres, edge_colours, edge_weights, tolerance, min_count, max_colors)

    all_colours, all_weights = _unique_colours(strokes.rgb[painted])
    return _final_palette(centres, all_colours, all_weights, tolerance, min_count)


def _check_tolerance(tolerance: float) -> None:
    if not (isinstance(tolerance, numbers.Real) and math.isfinite(tolerance) and tolerance > 0):
        raise GuidedInputError("tolerance", f"must be a positive number, got {tolerance!r}")


def _local_spread(strokes: StrokeImage) -> np.ndarray:
    """Per pixel, the largest channel range over its painted 3x3 neighbourhood."""
    painted = strokes.alpha[..., None]
    # Unpainted neighbours must not count: make them neutral for max (0) and min (255).
    for_max = np.ascontiguousarray(np.where(painted, strokes.rgb, 0).astype(np.uint8))
    for_min = np.ascontiguousarray(np.where(painted, strokes.rgb, 255).astype(np.uint8))
    kernel = np.ones((3, 3), np.uint8)
    high = cv2.dilate(for_max, kernel).reshape(strokes.rgb.shape).astype(np.int16)
    low = cv2.erode(for_min, kernel).reshape(strokes.rgb.shape).astype(np.int16)
    return (high - low).max(axis=2)


def _unique_colours(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct colours (float64 Mx3) and their pixel counts; working on these keeps big images cheap."""
    if pixels.size == 0:
        return np.zeros((0, 3)), np.zeros(0)
    packed = _pack(pixels)
    unique, counts = np.unique(packed, return_counts=True)
    return _unpack(unique).astype(np.float64), counts.astype(np.float64)


def _pack(pixels: np.ndarray) -> np.ndarray:
    p = pixels.astype(np.int32)
    return (p[..., 0] << 16) | (p[..., 1] << 8) | p[..., 2]


def _unpack(packed: np.ndarray) -> np.ndarray:
    return np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=-1)


def _weighted_median(colours: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-channel weighted median: robust to JPEG noise and stray blend pixels."""
    result = np.empty(3)
    half = weights.sum() / 2.0
    for channel in range(3):
        order = np.argsort(colours[:, channel], kind="stable")
        cumulative = np.cumsum(weights[order])
        result[channel] = colours[order[np.searchsorted(cumulative, half)], channel]
    return result


def _greedy_clusters(
    colours: np.ndarray,
    weights: np.ndarray,
    tolerance: float,
    min_count: float,
    max_clusters: int,
    known: Sequence[np.ndarray] = (),
) -> list[np.ndarray]:
    """Repeatedly take the densest coarse histogram bin, climb to its mode, remove that ball.

    Mode seeking uses all pixels, not only the remaining ones, so a shoulder left around an
    already-found colour (soft edges, JPEG noise) climbs back to that colour and is discarded.
    """
    centres: list[np.ndarray] = []
    if len(colours) == 0:
        return centres
    remaining = weights.copy()
    bins = _colour_bins(colours, tolerance)
    rejected_in_a_row = 0
    # Paintings need few rounds; the bounds keep photo-like inputs from taking minutes.
    while len(centres) < max_clusters and rejected_in_a_row < 8:
        bin_mass = np.bincount(bins, weights=remaining)
        seed_bin = int(np.argmax(bin_mass))
        if bin_mass[seed_bin] < min_count / 10.0:
            break
        in_bin = bins == seed_bin
        seed = np.average(colours[in_bin], axis=0, weights=remaining[in_bin])
        centre = _seek_mode(colours, weights, seed, tolerance)
        members = _within(colours, centre, tolerance) & (remaining > 0)
        mass = float(remaining[members].sum())
        remaining[members | in_bin] = 0.0  # always clear the seed bin so the loop progresses
        is_shoulder = any(np.linalg.norm(centre - other) <= tolerance for other in [*known, *centres])
        if mass >= min_count and not is_shoulder:
            centres.append(centre)
            rejected_in_a_row = 0
        else:
            rejected_in_a_row += 1
    return centres


def _within(colours: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    offsets = colours - centre
    return np.einsum("ij,ij->i", offsets, offsets) <= radius * radius


def _colour_bins(colours: np.ndarray, tolerance: float) -> np.ndarray:
    """Index of each colour's coarse histogram cell (cells of a third of the tolerance)."""
    bin_size = max(1.0, tolerance / 3.0)
    keys = (colours // bin_size).astype(np.int64) @ np.array([1 << 16, 1 << 8, 1])
    return np.unique(keys, return_inverse=True)[1].ravel()


def _seek_mode(colours: np.ndarray, weights: np.ndarray, start: np.ndarray, tolerance: float) -> np.ndarray:
    """Move ``start`` to the weighted median of its tolerance ball until it settles."""
    # Only colours near the seed can matter; pre-selecting them keeps big palettes cheap.
    nearby = _within(colours, start, 4.0 * tolerance) & (weights > 0)
    colours, weights = colours[nearby], weights[nearby]
    centre = start
    for _ in range(10):
        members = _within(colours, centre, tolerance)
        if not members.any():
            break
        moved = _weighted_median(colours[members], weights[members])
        if np.allclose(moved, centre):
            break
        centre = moved
    return centre


def _blend_distance(colours: np.ndarray, centres: Sequence[np.ndarray]) -> np.ndarray:
    """Distance of each colour to the nearest centre or to the nearest blend of two centres."""
    best = np.full(len(colours), np.inf)
    for i, start in enumerate(centres):
        best = np.minimum(best, _colour_distance(colours, start))
        for end in centres[i + 1 :]:
            best = np.minimum(best, _distance_to_segment(colours, start, end))
    return best


def _add_unexplained_clusters(
    centres: list[np.ndarray],
    colours: np.ndarray,
    weights: np.ndarray,
    tolerance: float,
    min_count: float,
    max_clusters: int,
) -> list[np.ndarray]:
    """Colours only present on non-flat pixels (thin lines) that no blend of known colours explains."""
    centres = list(centres)
    while len(centres) < max_clusters and len(colours):
        # JPEG chroma subsampling pushes edge blends well off the RGB segment: be lenient here.
        unexplained = _blend_distance(colours, centres) > 2.0 * tolerance
        if weights[unexplained].sum() < min_count:
            break
        found = _greedy_clusters(colours[unexplained], weights[unexplained], tolerance, min_count, 1, centres)
        if not found:
            break
        centres.append(found[0])
    return centres


def _final_palette(
    centres: list[np.ndarray],
    colours: np.ndarray,
    weights: np.ndarray,
    tolerance: float,
    min_count: float,
) -> list[PaletteColor]:
    """Merge near-duplicate centres, drop specks by their share of all painted pixels, sort by area."""
    if not centres:
        return []
    kept = _merge_close_centres(np.round(np.stack(centres)), colours, weights, tolerance)
    masses = _assigned_mass(kept, colours, weights)
    kept = kept[masses >= min_count]
    if len(kept) == 0:
        return []
    masses = _assigned_mass(kept, colours, weights)
    total = float(weights.sum())
    palette = [
        PaletteColor(rgb=_rgb_tuple(c), hex=to_hex(_rgb_tuple(c)), fraction=float(m) / total)
        for c, m in zip(kept, masses, strict=True)
    ]
    return sorted(palette, key=lambda p: (-p.fraction, p.hex))


def _merge_close_centres(
    centres: np.ndarray, colours: np.ndarray, weights: np.ndarray, tolerance: float
) -> np.ndarray:
    masses = _assigned_mass(centres, colours, weights)
    kept: list[np.ndarray] = []
    for index in np.argsort(-masses, kind="stable"):
        if all(np.linalg.norm(centres[index] - other) > tolerance for other in kept):
            kept.append(centres[index])
    return np.stack(kept)


def _assigned_mass(centres: np.ndarray, colours: np.ndarray, weights: np.ndarray) -> np.ndarray:
    nearest = _nearest_index(colours, centres)
    return np.bincount(nearest, weights=weights, minlength=len(centres))


def _nearest_index(colours: np.ndarray, centres: np.ndarray) -> np.ndarray:
    distances = ((colours[:, None, :] - centres[None, :, :]) ** 2).sum(axis=-1)
    return np.argmin(distances, axis=1)


def _rgb_tuple(colour: np.ndarray) -> RGB:
    r, g, b = (int(v) for v in np.clip(np.rint(colour), 0, 255))
    return (r, g, b)


# --------------------------------------------------------------------------------------------------
# Snapping and masks


def snap_to_palette(
    strokes: Any, palette: Sequence[Any], tolerance: float = DEFAULT_TOLERANCE
) -> tuple[np.ndarray, StrokeImage]:
    """Label every painted pixel with a palette index (-1 = unpainted) and flatten the regions.

    Flat pixels near a palette colour keep it. Other pixels take their nearest colour, except that
    blends of two neighbouring regions go to one of them (a red/blue edge never becomes a purple
    that exists elsewhere) and colours nothing explains (dropped specks) join a neighbouring region.
    """
    strokes = _as_strokes(strokes)
    _check_tolerance(tolerance)
    centres = _palette_array(palette, "palette")
    if len(centres) == 0:
        raise GuidedInputError("palette", "the palette is empty")

    painted = strokes.alpha
    # Distances per distinct colour, not per pixel: paintings have few distinct colours.
    unique, inverse = np.unique(_pack(strokes.rgb), return_inverse=True)
    inverse = inverse.reshape(painted.shape)
    distances = np.sqrt(((_unpack(unique)[:, None, :] - centres[None]) ** 2).sum(axis=-1)).astype(np.float32)
    nearest = np.argmin(distances, axis=-1)

    labels = np.full(painted.shape, -1, dtype=np.int32)
    flat = painted & (_local_spread(strokes) <= tolerance / 2.0)
    core = flat & (distances[inverse, nearest[inverse]] <= tolerance)
    labels[core] = nearest[inverse[core]]

    rest = painted & ~core
    if rest.any():
        rest_colours = strokes.rgb[rest].astype(np.float64)
        _label_edge_pixels(labels, rest, rest_colours, distances[inverse[rest]], centres, tolerance)
    _fill_unresolved(labels, painted)

    snapped_rgb = strokes.rgb.copy()
    snapped_rgb[painted] = centres[labels[painted]].astype(np.uint8)
    return labels, StrokeImage(snapped_rgb, strokes.alpha.copy())


def _label_edge_pixels(
    labels: np.ndarray,
    rest: np.ndarray,
    colours: np.ndarray,
    distances: np.ndarray,
    centres: np.ndarray,
    tolerance: float,
) -> None:
    """Label the ``rest`` pixels (colours N x 3, palette distances N x K) in ``labels`` in place.

    The nearest colour wins (robust to JPEG shifts), except that when the nearest colour has no
    region nearby and a blend of two nearby regions explains the pixel better, the nearer region
    of the pair wins, and a colour far from every palette colour and every blend of two (a dropped
    speck) takes the colour-nearest nearby region, or stays -1 if there is none.
    """
    nearby = _nearby_core_labels(labels, len(centres))[rest]  # N x K
    rows = np.arange(len(colours))
    nearest = np.argmin(distances, axis=-1)
    local_label, local_distance = _nearest_blend(colours, distances, centres, nearby)
    blend_wins = ~nearby[rows, nearest] & (local_distance <= distances[rows, nearest])
    label = np.where(blend_wins, local_label, nearest)

    # Same leniency as palette extraction: what it would not have made a colour of is a speck.
    _, any_distance = _nearest_blend(colours, distances, centres, np.ones_like(nearby))
    foreign = any_distance > 2.0 * tolerance
    nearest_nearby = np.argmin(np.where(nearby, distances, np.inf), axis=-1)
    label = np.where(foreign, np.where(nearby.any(axis=-1), nearest_nearby, -1), label)
    labels[rest] = label


def _nearby_core_labels(labels: np.ndarray, count: int, radius: int = 4) -> np.ndarray:
    """N x K: which colours have a core region within ``radius`` px (JPEG erodes cores near edges)."""
    kernel = np.ones((2 * radius + 1, 2 * radius + 1), np.uint8)
    maps = [cv2.dilate((labels == k).astype(np.uint8), kernel) > 0 for k in range(count)]
    return np.stack(maps, axis=-1)


def _nearest_blend(
    colours: np.ndarray, distances: np.ndarray, centres: np.ndarray, allowed: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the best explanation by an allowed colour or a blend of two allowed colours.

    Returns (label, distance); a blend is labelled with its nearer end (the colour covering most
    of the pixel). Pixels with nothing allowed get distance inf.
    """
    allowed_distances = np.where(allowed, distances, np.inf)
    label = np.argmin(allowed_distances, axis=-1)
    best = np.take_along_axis(allowed_distances, label[:, None], axis=-1)[:, 0]
    for i in range(len(centres)):
        for j in range(i + 1, len(centres)):
            pair_ok = allowed[:, i] & allowed[:, j]
            if not pair_ok.any():
                continue
            segment = np.where(pair_ok, _distance_to_segment(colours, centres[i], centres[j]), np.inf)
            better = segment < best
            best = np.where(better, segment, best)
            label = np.where(better, np.where(distances[:, i] <= distances[:, j], i, j), label)
    return label, best


def _fill_unresolved(labels: np.ndarray, painted: np.ndarray) -> None:
    unresolved = painted & (labels < 0)
    if not unresolved.any():
        return
    resolved = labels >= 0
    if not resolved.any():
        return
    _, (rows, cols) = ndimage.distance_transform_edt(~resolved, return_indices=True)
    labels[unresolved] = labels[rows[unresolved], cols[unresolved]]


def _palette_array(palette: Sequence[Any], field: str) -> np.ndarray:
    if palette is None or isinstance(palette, (str, bytes)):
        raise GuidedInputError(field, "expected a list of colours")
    rows = [parse_color(item, f"{field}[{i}]") for i, item in enumerate(palette)]
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def colour_masks(
    strokes: Any,
    palette: Sequence[Any],
    size: tuple[int, int] | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
) -> dict[str, torch.Tensor]:
    """Per palette colour (keyed by hex), a float [H,W] mask; ``size=(h, w)`` resizes it.

    Pass the painting's full palette (``extract_palette``), not only the colours bound to phrases:
    every painted pixel is snapped to one of the given colours. Select bound masks by hex.

    Downsampling averages areas, so a latent-resolution mask is each cell's coverage fraction.
    The masks of different colours sum to at most 1 at every pixel (0 where unpainted).
    """
    strokes = _as_strokes(strokes)
    hexes = [to_hex(colour) for colour in _palette_array(palette, "palette").astype(int)]
    if len(set(hexes)) != len(hexes):
        raise GuidedInputError("palette", f"the palette lists a colour twice: {', '.join(hexes)}")
    labels, _ = snap_to_palette(strokes, palette, tolerance)
    label_tensor = torch.from_numpy(labels.astype(np.int64))
    masks = torch.stack([(label_tensor == k).float() for k in range(len(hexes))])
    if size is not None:
        height, width = _check_size(size)
        _check_aspect(strokes.width, strokes.height, width, height)
        masks = _resize_masks(masks, height, width)
    return {hex_: masks[k] for k, hex_ in enumerate(hexes)}


def _check_size(size: Any) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise GuidedInputError("size", f"expected (height, width), got {size!r}") from None
    if height <= 0 or width <= 0:
        raise GuidedInputError("size", f"height and width must be positive, got {size!r}")
    return height, width


def _resize_masks(masks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if tuple(masks.shape[-2:]) == (height, width):
        return masks
    batch = masks[None]
    if height <= masks.shape[-2] and width <= masks.shape[-1]:
        resized = F.interpolate(batch, size=(height, width), mode="area")
    else:
        resized = F.interpolate(
            batch, size=(height, width), mode="bilinear", align_corners=False, antialias=True
        )
    resized = resized[0].clamp(0.0, 1.0)
    # Convex resampling keeps sums <= 1 up to rounding; renormalise the rounding away.
    total = resized.sum(dim=0, keepdim=True)
    return torch.where(total > 1.0, resized / total, resized)


def _check_aspect(src_width: int, src_height: int, dst_width: int, dst_height: int) -> None:
    source_ratio = src_width / src_height
    target_ratio = dst_width / dst_height
    if abs(source_ratio / target_ratio - 1.0) > ASPECT_TOLERANCE + 1e-9:
        raise GuidedInputError(
            "strokes",
            f"the painting's aspect ratio {source_ratio:.3f} ({src_width}x{src_height}) differs from the "
            f"output's {target_ratio:.3f} ({dst_width}x{dst_height}) by more than "
            f"{ASPECT_TOLERANCE:.0%}; crop or pad the painting to the output's shape",
        )


# --------------------------------------------------------------------------------------------------
# User palettes (colour -> phrase bindings)


@dataclass(frozen=True)
class PaletteEntry:
    """One validated user binding: a colour, the phrase it stands for and its weight."""

    rgb: RGB
    phrase: str
    weight: float = 1.0

    @property
    def hex(self) -> str:
        return to_hex(self.rgb)


@dataclass(frozen=True)
class BoundRegion:
    """A painting colour bound to a phrase; ``index`` points into the painting palette."""

    hex: str
    rgb: RGB
    phrase: str
    weight: float
    index: int


_ENTRY_KEYS = {"color", "colour", "phrase", "weight"}


@dataclass(frozen=True)
class UserPalette:
    """A validated list of ``(color, phrase, weight)`` bindings."""

    entries: tuple[PaletteEntry, ...] = ()

    @classmethod
    def parse(cls, entries: Any) -> UserPalette:
        """Validate dicts ``{"color", "phrase", "weight"}`` or tuples ``(color, phrase[, weight])``."""
        if isinstance(entries, UserPalette):
            return entries
        if entries is None:
            return cls(())
        if isinstance(entries, (str, bytes, dict)) or not isinstance(entries, Sequence):
            raise GuidedInputError("palette", f"expected a list of entries, got {type(entries).__name__}")
        return cls(tuple(_parse_entry(entry, i) for i, entry in enumerate(entries)))

    def __len__(self) -> int:
        return len(self.entries)

    def __iter__(self) -> Iterator[PaletteEntry]:
        return iter(self.entries)


def _parse_entry(entry: Any, index: int) -> PaletteEntry:
    field = f"palette[{index}]"
    if isinstance(entry, PaletteEntry):
        color, phrase, weight = entry.rgb, entry.phrase, entry.weight
    elif isinstance(entry, dict):
        unknown = sorted(str(k) for k in entry if k not in _ENTRY_KEYS)
        if unknown:
            expected = "expected color, phrase, weight"
            raise GuidedInputError(field, f"unknown key(s) {', '.join(unknown)}; {expected}")
        color = entry.get("color", entry.get("colour"))
        phrase, weight = entry.get("phrase"), entry.get("weight", 1.0)
    elif isinstance(entry, (tuple, list)) and len(entry) in (2, 3):
        color, phrase = entry[0], entry[1]
        weight = entry[2] if len(entry) == 3 else 1.0
    else:
        raise GuidedInputError(
            field, "expected {'color', 'phrase', 'weight'} or a (color, phrase[, weight]) tuple"
        )
    if color is None:
        raise GuidedInputError(f"{field}.color", "missing")
    return PaletteEntry(
        rgb=parse_color(color, f"{field}.color"),
        phrase=_check_phrase(phrase, f"{field}.phrase"),
        weight=_check_weight(weight, f"{field}.weight"),
    )


def _check_phrase(phrase: Any, field: str) -> str:
    if not isinstance(phrase, str):
        raise GuidedInputError(field, f"must be a string, got {type(phrase).__name__}")
    if not phrase.strip():
        raise GuidedInputError(field, "must not be empty")
    return phrase.strip()


def _check_weight(weight: Any, field: str) -> float:
    if isinstance(weight, (bool, np.bool_)) or not isinstance(weight, numbers.Real):
        raise GuidedInputError(field, f"must be a number, got {weight!r}")
    value = float(weight)
    if not math.isfinite(value) or not 0.0 <= value <= MAX_WEIGHT:
        raise GuidedInputError(field, f"must be a finite number in [0, {MAX_WEIGHT:g}], got {weight!r}")
    return value


def resolve_palette(
    entries: Any, painting_palette: Sequence[Any], tolerance: float = DEFAULT_TOLERANCE
) -> list[BoundRegion]:
    """Bind each user colour to the nearest painting colour (within ``tolerance``).

    The returned ``hex``/``rgb`` are the painting's colour, so they key into ``colour_masks``.
    """
    user = UserPalette.parse(entries)
    _check_tolerance(tolerance)
    painting = _palette_array(painting_palette, "painting_palette")
    painting_hexes = [to_hex(_rgb_tuple(c)) for c in painting]
    bound: list[BoundRegion] = []
    owner: dict[int, int] = {}
    for i, entry in enumerate(user):
        index = _match_painting_colour(entry, i, painting, painting_hexes, tolerance)
        if index in owner:
            raise GuidedInputError(
                f"palette[{i}].color",
                f"colour {entry.hex} matches painting colour {painting_hexes[index]}, which "
                f"palette[{owner[index]}] already binds; bind each painting colour once",
            )
        owner[index] = i
        rgb = _rgb_tuple(painting[index])
        bound.append(BoundRegion(painting_hexes[index], rgb, entry.phrase, entry.weight, index))
    return bound


def _match_painting_colour(
    entry: PaletteEntry, i: int, painting: np.ndarray, painting_hexes: list[str], tolerance: float
) -> int:
    field = f"palette[{i}].color"
    if len(painting) == 0:
        raise GuidedInputError(
            field, f"colour {entry.hex} is not in the painting; the painting has no colours"
        )
    distances = _colour_distance(painting, np.array(entry.rgb, dtype=np.float64))
    index = int(np.argmin(distances))
    if distances[index] > tolerance:
        raise GuidedInputError(
            field,
            f"colour {entry.hex} is not in the painting; the painting has {', '.join(painting_hexes)} "
            f"(nearest {painting_hexes[index]} is {distances[index]:.0f} away, tolerance {tolerance:g})",
        )
    return index


# --------------------------------------------------------------------------------------------------
# Target at output resolution


def resize_strokes(
    strokes: Any, width: int, height: int, background: Any = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The stroke target at output size: ``(target [1,3,H,W] in [0,1], painted_mask [1,1,H,W])``.

    Unpainted pixels are 0 in the target and in the mask, so the loss can ignore them; with a
    ``background`` colour they become that colour and the mask is all ones.
    """
    strokes = _as_strokes(strokes)
    width, height = _check_dimension(width, "width"), _check_dimension(height, "height")
    _check_aspect(strokes.width, strokes.height, width, height)
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


def _check_dimension(value: Any, field: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or int(value) <= 0:
        raise GuidedInputError(field, f"must be a positive integer, got {value!r}")
    return int(value)


def _resize_image(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if tuple(image.shape[-2:]) == (height, width):
        return image
    return F.interpolate(image, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
