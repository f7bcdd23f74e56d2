"""Colour clustering for palette extraction: where a painting's dominant colours lie in RGB.

Centres are found greedily: take the densest coarse histogram bin, climb to the mode of its
tolerance ball (weighted medians, robust to JPEG noise and stray blend pixels), remove that ball,
repeat. Colours on non-flat pixels that no colour and no blend of two colours explains (thin lines)
may add centres. Near-duplicate centres are merged, the heavier one kept; every colour counts
towards its nearest centre.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lib_guided.strokes.colors import colour_distance, distance_to_segment
from lib_guided.strokes.palette_pixels import UNEXPLAINED


def _weighted_median(colours: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per-channel weighted median: robust to JPEG noise and stray blend pixels."""
    result = np.empty(3)
    half = weights.sum() / 2.0
    for channel in range(3):
        order = np.argsort(colours[:, channel], kind="stable")
        cumulative = np.cumsum(weights[order])
        result[channel] = colours[order[np.searchsorted(cumulative, half)], channel]
    return result


def greedy_clusters(
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


def add_unexplained_clusters(
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
        unexplained = _blend_distance(colours, centres) > UNEXPLAINED * tolerance
        if weights[unexplained].sum() < min_count:
            break
        found = greedy_clusters(colours[unexplained], weights[unexplained], tolerance, min_count, 1, centres)
        if not found:
            break
        centres.append(found[0])
    return centres


def merge_close_centres(
    centres: np.ndarray, colours: np.ndarray, weights: np.ndarray, tolerance: float
) -> np.ndarray:
    """Drop every centre within ``tolerance`` of a heavier one (masses by :func:`assigned_mass`)."""
    masses = assigned_mass(centres, colours, weights)
    kept: list[np.ndarray] = []
    for index in np.argsort(-masses, kind="stable"):
        if all(np.linalg.norm(centres[index] - other) > tolerance for other in kept):
            kept.append(centres[index])
    return np.stack(kept)


def assigned_mass(centres: np.ndarray, colours: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Per centre, the summed weight of the colours nearest to it."""
    nearest = _nearest_index(colours, centres)
    return np.bincount(nearest, weights=weights, minlength=len(centres))


def _nearest_index(colours: np.ndarray, centres: np.ndarray) -> np.ndarray:
    distances = ((colours[:, None, :] - centres[None, :, :]) ** 2).sum(axis=-1)
    return np.argmin(distances, axis=1)
