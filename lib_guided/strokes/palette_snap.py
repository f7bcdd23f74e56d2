"""Snapping: label every painted pixel with one palette colour and flatten the painting to the palette.

Region interiors keep their colour; edge pixels go to a colour that explains them, with care that a
blend of two neighbouring regions (anti-aliasing, JPEG) is not mistaken for a third palette colour
that happens to lie between them, and that dropped specks join a neighbouring region.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from lib_guided.errors import GuidedInputError
from lib_guided.strokes.colors import colour_distance, distance_to_segment, parse_colors
from lib_guided.strokes.io import StrokeImage, as_strokes
from lib_guided.strokes.palette_pixels import (
    DEFAULT_TOLERANCE,
    UNEXPLAINED,
    check_tolerance,
    flat_pixels,
    pack_rgb,
    unpack_rgb,
)


def snap_to_palette(
    strokes: Any, palette: Sequence[Any], tolerance: float = DEFAULT_TOLERANCE
) -> tuple[np.ndarray, StrokeImage]:
    """Label every painted pixel with a palette index (-1 = unpainted) and flatten the regions.

    Flat pixels near a palette colour keep it. Other pixels take their nearest colour, except that
    blends of two neighbouring regions go to one of them (a red/blue edge never becomes a purple
    that exists elsewhere) and colours nothing explains (dropped specks) join a neighbouring region.
    """
    strokes = as_strokes(strokes)
    check_tolerance(tolerance)
    centres = parse_colors(palette, "palette")
    if len(centres) == 0:
        raise GuidedInputError("palette", "the palette is empty")

    painted = strokes.alpha
    # Distances per distinct colour, not per pixel: paintings have few distinct colours.
    unique, inverse = np.unique(pack_rgb(strokes.rgb), return_inverse=True)
    inverse = inverse.reshape(painted.shape)
    distances = colour_distance(unpack_rgb(unique)[:, None, :], centres[None]).astype(np.float32)
    nearest = np.argmin(distances, axis=-1)

    labels = np.full(painted.shape, -1, dtype=np.int32)
    flat = flat_pixels(strokes, tolerance)
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
    foreign = any_distance > UNEXPLAINED * tolerance
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
            segment = np.where(pair_ok, distance_to_segment(colours, centres[i], centres[j]), np.inf)
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
    # every unresolved pixel takes the label of its nearest resolved pixel (OpenCV's Voronoi labels)
    source = np.where(resolved, 0, 255).astype(np.uint8)
    _, nearest = cv2.distanceTransformWithLabels(source, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    rows, cols = np.nonzero(resolved)
    index_of_label = np.zeros(int(nearest.max()) + 1, np.int64)
    index_of_label[nearest[resolved]] = np.arange(len(rows))
    k = index_of_label[nearest[unresolved]]
    labels[unresolved] = labels[rows[k], cols[k]]
