"""Pixel groundwork shared by palette extraction and snapping: the colour tolerance, "flat" pixels, and
a painting's distinct colours with their pixel counts.

Flat pixels (3x3 neighbourhood spread within half the tolerance) are region interiors: anti-aliased
edges and JPEG ringing are not flat, so they can neither start a palette colour nor keep a colour
when snapping. Working on distinct colours instead of pixels keeps big paintings cheap.
"""

from __future__ import annotations

import math
import numbers

import cv2
import numpy as np

from lib_guided.errors import GuidedInputError
from lib_guided.strokes.io import StrokeImage

DEFAULT_TOLERANCE = 24.0
# A colour further than this many tolerances from every palette colour and every blend of two is
# unexplained: palette extraction may make it a colour of its own, snapping treats it as a speck.
# JPEG chroma subsampling pushes edge blends well off the RGB segment, hence the leniency.
UNEXPLAINED = 2.0


def check_tolerance(tolerance: float) -> None:
    """Reject a tolerance (RGB distance) that is not a positive finite number."""
    if not (isinstance(tolerance, numbers.Real) and math.isfinite(tolerance) and tolerance > 0):
        raise GuidedInputError("tolerance", f"must be a positive number, got {tolerance!r}")


def flat_pixels(strokes: StrokeImage, tolerance: float) -> np.ndarray:
    """Painted pixels whose 3x3 neighbourhood spread is at most ``tolerance / 2`` (region interiors)."""
    return strokes.alpha & (_local_spread(strokes) <= tolerance / 2.0)


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


def unique_colours(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct colours (float64 Mx3) and their pixel counts; working on these keeps big images cheap."""
    if pixels.size == 0:
        return np.zeros((0, 3)), np.zeros(0)
    packed = pack_rgb(pixels)
    unique, counts = np.unique(packed, return_counts=True)
    return unpack_rgb(unique).astype(np.float64), counts.astype(np.float64)


def pack_rgb(pixels: np.ndarray) -> np.ndarray:
    """Each RGB triple as one int32 ``0xRRGGBB`` (so ``np.unique`` can work on colours)."""
    p = pixels.astype(np.int32)
    return (p[..., 0] << 16) | (p[..., 1] << 8) | p[..., 2]


def unpack_rgb(packed: np.ndarray) -> np.ndarray:
    """The inverse of :func:`pack_rgb`: ``...x3`` RGB."""
    return np.stack([(packed >> 16) & 255, (packed >> 8) & 255, packed & 255], axis=-1)
