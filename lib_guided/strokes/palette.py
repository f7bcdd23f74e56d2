"""Palettes: find a painting's dominant colours, snap its pixels to them, make per-colour masks."""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

from lib_guided.errors import GuidedInputError
from lib_guided.strokes.colors import (
    RGB,
    HasRGB,
    colour_distance,
    distance_to_segment,
    parse_colors,
    rgb_tuple,
    to_hex,
)
from lib_guided.strokes.io import StrokeImage, as_strokes
from lib_guided.strokes.resize import check_aspect, resize_masks

DEFAULT_TOLERANCE = 24.0
# A colour further than this many tolerances from every palette colour and every blend of two is
# unexplained: palette extraction may make it a colour of its own, snapping treats it as a speck.
# JPEG chroma subsampling pushes edge blends well off the RGB segment, hence the leniency.
_UNEXPLAINED = 2.0


@dataclass(frozen=True)
class PaletteColor(HasRGB):
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
    strokes = as_strokes(strokes)
    check_tolerance(tolerance)
    if not 0.0 <= min_fraction < 1.0:
        raise GuidedInputError("min_fraction", f"must lie in [0, 1), got {min_fraction}")
    painted = strokes.alpha
    total = int(painted.sum())
    min_count = max(1.0, min_fraction * total)
    flat = _flat_pixels(strokes, tolerance)

    core_colours, core_weights = _unique_colours(strokes.rgb[flat])
    # Flat pixels near an edge are slightly fewer than a region's area, hence the lenient threshold.
    centres = _greedy_clusters(core_colours, core_weights, tolerance, 0.5 * min_count, max_colors)
    edge_colours, edge_weights = _unique_colours(strokes.rgb[painted & ~flat])
    centres = _add_unexplained_clusters(centres, edge_colours, edge_weights, tolerance, min_count, max_colors)

    all_colours, all_weights = _unique_colours(strokes.rgb[painted])
    return _final_palette(centres, all_colours, all_weights, tolerance, min_count)


def check_tolerance(tolerance: float) -> None:
    """Reject a tolerance (RGB distance) that is not a positive finite number."""
    if not (isinstance(tolerance, numbers.Real) and math.isfinite(tolerance) and tolerance > 0):
        raise GuidedInputError("tolerance", f"must be a positive number, got {tolerance!r}")


def _flat_pixels(strokes: StrokeImage, tolerance: float) -> np.ndarray:
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
        best = np.minimum(best, colour_distance(colours, start))
        for end in centres[i + 1 :]:
            best = np.minimum(best, distance_to_segment(colours, start, end))
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
        unexplained = _blend_distance(colours, centres) > _UNEXPLAINED * tolerance
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
        PaletteColor(rgb=rgb_tuple(c), hex=to_hex(rgb_tuple(c)), fraction=float(m) / total)
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
    unique, inverse = np.unique(_pack(strokes.rgb), return_inverse=True)
    inverse = inverse.reshape(painted.shape)
    distances = colour_distance(_unpack(unique)[:, None, :], centres[None]).astype(np.float32)
    nearest = np.argmin(distances, axis=-1)

    labels = np.full(painted.shape, -1, dtype=np.int32)
    flat = _flat_pixels(strokes, tolerance)
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
    foreign = any_distance > _UNEXPLAINED * tolerance
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
    strokes = as_strokes(strokes)
    hexes = [to_hex(colour) for colour in parse_colors(palette, "palette").astype(int)]
    if len(set(hexes)) != len(hexes):
        raise GuidedInputError("palette", f"the palette lists a colour twice: {', '.join(hexes)}")
    labels, _ = snap_to_palette(strokes, palette, tolerance)
    label_tensor = torch.from_numpy(labels.astype(np.int64))
    masks = torch.stack([(label_tensor == k).float() for k in range(len(hexes))])
    if size is not None:
        height, width = _check_size(size)
        check_aspect(strokes.width, strokes.height, width, height)
        masks = resize_masks(masks, height, width)
    return {hex_: masks[k] for k, hex_ in enumerate(hexes)}


def _check_size(size: Any) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in size)
    except (TypeError, ValueError):
        raise GuidedInputError("size", f"expected (height, width), got {size!r}") from None
    if height <= 0 or width <= 0:
        raise GuidedInputError("size", f"height and width must be positive, got {size!r}")
    return height, width
