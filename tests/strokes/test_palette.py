"""Palette extraction on anti-aliased / JPEG paintings, snapping to flat regions, colour masks."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from lib_guided.strokes.colors import to_hex
from lib_guided.strokes.io import load_strokes
from lib_guided.strokes.palette import colour_masks, extract_palette
from lib_guided.strokes.palette_snap import snap_to_palette
from tests.paintings import (
    BACKGROUND,
    SHAPE_COLOURS,
    SPECK_AT,
    SUPERSAMPLE,
    closest,
    draw_shapes,
    jpeg_bytes,
    png_base64,
)


@pytest.fixture(scope="module")
def painting():
    return draw_shapes(128, BACKGROUND)


# --- palette extraction ----------------------------------------------------------------------------


def test_palette_of_antialiased_painting_is_exactly_the_four_colours(painting):
    image, truths = painting
    palette = extract_palette(load_strokes(image))
    assert len(palette) == 4, [p.hex for p in palette]
    background, *shapes = closest(palette, (BACKGROUND, *SHAPE_COLOURS))
    assert palette[0] == background  # sorted by area, the background is largest
    assert [p.fraction for p in palette] == sorted((p.fraction for p in palette), reverse=True)
    assert sum(p.fraction for p in palette) == pytest.approx(1.0)
    for colour, truth in zip(shapes, truths, strict=True):
        assert colour.fraction == pytest.approx(truth.mean(), abs=0.01)
        assert colour.hex == to_hex(colour.rgb)


@pytest.mark.parametrize("transport", ["bytes", "base64", "data-url"])
def test_palette_survives_jpeg_quality_75(painting, transport):
    image, _ = painting
    data = jpeg_bytes(image, quality=75)
    encoded = base64.b64encode(data).decode()
    source = {"bytes": data, "base64": encoded, "data-url": f"data:image/jpeg;base64,{encoded}"}[transport]
    palette = extract_palette(load_strokes(source))
    assert len(palette) == 4, [p.hex for p in palette]
    closest(palette, (BACKGROUND, *SHAPE_COLOURS))


def test_palette_is_deterministic(painting):
    strokes = load_strokes(jpeg_bytes(painting[0]))
    assert extract_palette(strokes) == extract_palette(strokes)


def test_tiny_speck_is_dropped():
    image, _ = draw_shapes(128, BACKGROUND, speck=True)
    for source in (image, jpeg_bytes(image)):
        strokes = load_strokes(source)
        palette = extract_palette(strokes)
        assert len(palette) == 4, [p.hex for p in palette]
        closest(palette, (BACKGROUND, *SHAPE_COLOURS))
        # The speck is absorbed by the background when snapping.
        labels, snapped = snap_to_palette(strokes, palette)
        row, col = int(SPECK_AT[0] * 128), int(SPECK_AT[1] * 128)
        assert snapped.rgb[row : row + 2, col : col + 2].min() > 200  # sanity: not a shape
        speck_pixels = snapped.rgb[row : row + 2, col : col + 2]
        assert {tuple(p) for p in speck_pixels.reshape(-1, 3)} == {closest(palette, [BACKGROUND])[0].rgb}


def test_thin_line_gets_its_own_colour():
    image, _ = draw_shapes(128, BACKGROUND)
    # A 3 px line has no flat pixels at all; it must still be found.
    ImageDraw.Draw(image).line([(5, 120), (120, 100)], fill=(240, 200, 40), width=3)
    palette = extract_palette(load_strokes(image))
    assert len(palette) == 5, [p.hex for p in palette]
    closest(palette, (BACKGROUND, *SHAPE_COLOURS, (240, 200, 40)))


def test_rgba_transparent_background_is_not_a_colour():
    image, truths = draw_shapes(128, (0, 0, 0, 0))
    strokes = load_strokes(png_base64(image))
    union = np.logical_or.reduce(truths)
    assert (strokes.alpha == union).mean() > 0.99
    palette = extract_palette(strokes)
    assert len(palette) == 3, [p.hex for p in palette]
    closest(palette, SHAPE_COLOURS)
    labels, _ = snap_to_palette(strokes, palette)
    assert (labels[~strokes.alpha] == -1).all() and (labels[strokes.alpha] >= 0).all()


# --- snapping and masks ----------------------------------------------------------------------------


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("jpeg", [False, True])
def test_snapping_gives_flat_regions_matching_the_shapes(painting, jpeg):
    image, truths = painting
    strokes = load_strokes(jpeg_bytes(image) if jpeg else image)
    palette = extract_palette(strokes)
    labels, snapped = snap_to_palette(strokes, palette)
    assert labels.shape == (128, 128) and (labels >= 0).all()
    assert {tuple(c) for c in snapped.rgb.reshape(-1, 3)} == {p.rgb for p in palette}
    for colour, truth in zip(closest(palette, SHAPE_COLOURS), truths, strict=True):
        assert _iou(labels == palette.index(colour), truth) > 0.95


def test_blend_of_two_regions_never_becomes_a_third_colour():
    # The red/blue edge blend equals the purple drawn elsewhere; it must snap to red or blue.
    red, blue, purple = (220, 40, 40), (40, 40, 220), (130, 40, 130)
    big = 128 * SUPERSAMPLE
    image = Image.new("RGB", (big, big), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw.rectangle([10 * SUPERSAMPLE, 10 * SUPERSAMPLE, 60.5 * SUPERSAMPLE, 90 * SUPERSAMPLE], fill=red)
    draw.rectangle([60.5 * SUPERSAMPLE, 10 * SUPERSAMPLE, 110 * SUPERSAMPLE, 90 * SUPERSAMPLE], fill=blue)
    draw.ellipse([20 * SUPERSAMPLE, 100 * SUPERSAMPLE, 40 * SUPERSAMPLE, 120 * SUPERSAMPLE], fill=purple)
    strokes = load_strokes(image.resize((128, 128), Image.LANCZOS))
    palette = extract_palette(strokes)
    assert len(palette) == 4
    labels, _ = snap_to_palette(strokes, palette)
    purple_index = palette.index(closest(palette, [purple])[0])
    assert not (labels[:95] == purple_index).any()
    assert (labels[100:121] == purple_index).sum() > 200


def test_colour_masks_cover_shapes_and_sum_to_at_most_one(painting):
    image, truths = painting
    strokes = load_strokes(image)
    palette = extract_palette(strokes)
    masks = colour_masks(strokes, palette)
    assert list(masks) == [p.hex for p in palette]
    total = torch.stack(list(masks.values())).sum(0)
    assert total.shape == (128, 128) and float(total.max()) <= 1.0 + 1e-6
    for colour, truth in zip(closest(palette, SHAPE_COLOURS), truths, strict=True):
        mask = masks[colour.hex]
        assert mask.dtype == torch.float32 and set(mask.unique().tolist()) <= {0.0, 1.0}
        assert _iou(mask.numpy() > 0.5, truth) > 0.95


def test_latent_resolution_masks_are_soft_coverage(painting):
    image, truths = painting
    strokes = load_strokes(image)
    palette = extract_palette(strokes)
    full = colour_masks(strokes, palette)
    latent = colour_masks(strokes, palette, size=(16, 16))
    total = torch.stack(list(latent.values())).sum(0)
    assert float(total.max()) <= 1.0 + 1e-6 and float(total.min()) >= 1.0 - 1e-5  # opaque painting
    for colour in closest(palette, SHAPE_COLOURS):
        mask = latent[colour.hex]
        assert mask.shape == (16, 16)
        assert ((mask > 0.05) & (mask < 0.95)).any(), "edges of shapes must give partial coverage"
        # Area averaging preserves each colour's area.
        assert float(mask.mean()) == pytest.approx(float(full[colour.hex].mean()), abs=1e-5)


def test_latent_masks_of_rgba_painting_are_zero_where_unpainted():
    image, _ = draw_shapes(128, (0, 0, 0, 0))
    strokes = load_strokes(image)
    latent = colour_masks(strokes, extract_palette(strokes), size=(32, 32))
    total = torch.stack(list(latent.values())).sum(0)
    assert float(total[0, 0]) == 0.0 and float(total.max()) <= 1.0 + 1e-6
