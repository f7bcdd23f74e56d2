"""Palettes: find a painting's dominant colours and make per-colour masks from them.

:func:`extract_palette` seeds colours from flat pixels and clusters them (``palette_clusters``);
:func:`colour_masks` snaps every painted pixel to one palette colour (``palette_snap``) and turns the
labels into masks at any resolution. ``palette_pixels`` holds the tolerance and pixel helpers both use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lib_guided.errors import GuidedInputError
from lib_guided.strokes.colors import RGB, HasRGB, parse_colors, rgb_tuple, to_hex
from lib_guided.strokes.io import as_strokes
from lib_guided.strokes.palette_clusters import (
    add_unexplained_clusters,
    assigned_mass,
    greedy_clusters,
    merge_close_centres,
)
from lib_guided.strokes.palette_pixels import DEFAULT_TOLERANCE, check_tolerance, flat_pixels, unique_colours
from lib_guided.strokes.palette_snap import snap_to_palette
from lib_guided.strokes.resize import check_aspect, resize_masks


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
    flat = flat_pixels(strokes, tolerance)

    core_colours, core_weights = unique_colours(strokes.rgb[flat])
    # Flat pixels near an edge are slightly fewer than a region's area, hence the lenient threshold.
    centres = greedy_clusters(core_colours, core_weights, tolerance, 0.5 * min_count, max_colors)
    edge_colours, edge_weights = unique_colours(strokes.rgb[painted & ~flat])
    centres = add_unexplained_clusters(centres, edge_colours, edge_weights, tolerance, min_count, max_colors)

    all_colours, all_weights = unique_colours(strokes.rgb[painted])
    return _final_palette(centres, all_colours, all_weights, tolerance, min_count)


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
    kept = merge_close_centres(np.round(np.stack(centres)), colours, weights, tolerance)
    masses = assigned_mass(kept, colours, weights)
    kept = kept[masses >= min_count]
    if len(kept) == 0:
        return []
    masses = assigned_mass(kept, colours, weights)
    total = float(weights.sum())
    palette = [
        PaletteColor(rgb=rgb_tuple(c), hex=to_hex(rgb_tuple(c)), fraction=float(m) / total)
        for c, m in zip(kept, masses, strict=True)
    ]
    return sorted(palette, key=lambda p: (-p.fraction, p.hex))


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
