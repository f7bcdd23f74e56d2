"""Stroke loading, palette extraction on anti-aliased / JPEG paintings, snapping, masks, palettes."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from lib_guided.errors import GuidedInputError
from lib_guided.strokes import (
    PaletteColor,
    StrokeImage,
    UserPalette,
    colour_masks,
    extract_palette,
    load_strokes,
    parse_color,
    resize_strokes,
    resolve_palette,
    snap_to_palette,
    to_hex,
)

BACKGROUND = (235, 230, 210)
RED = (208, 48, 48)
BLUE = (48, 80, 192)
GREEN = (60, 170, 70)
SHAPE_COLOURS = (RED, BLUE, GREEN)
SUPERSAMPLE = 4
SPECK_AT = (0.62, 0.75)  # (row, column) as fractions, on the background


def _draw_shapes(size: int, background, speck: bool = False):
    """Three shapes drawn 4x supersampled then downsampled: real anti-aliased edges.

    Returns (image, ground-truth bool masks at ``size`` where coverage >= 1/2).
    """
    big = size * SUPERSAMPLE
    mode = "RGBA" if len(background) == 4 else "RGB"
    image = Image.new(mode, (big, big), background)
    draw = ImageDraw.Draw(image)
    shapes = [
        ("ellipse", [0.10 * big, 0.12 * big, 0.46 * big, 0.52 * big]),
        ("rectangle", [0.57 * big, 0.13 * big, 0.88 * big, 0.47 * big]),
        ("polygon", [(0.18 * big, 0.91 * big), (0.52 * big, 0.57 * big), (0.86 * big, 0.93 * big)]),
    ]
    truths = []
    for (kind, geometry), colour in zip(shapes, SHAPE_COLOURS, strict=True):
        fill = colour + (255,) if mode == "RGBA" else colour
        getattr(draw, kind)(geometry, fill=fill)
        truth = Image.new("L", (big, big), 0)
        getattr(ImageDraw.Draw(truth), kind)(geometry, fill=255)
        truths.append(np.asarray(truth.resize((size, size), Image.BOX)) >= 128)
    if speck:
        # A 2x2 dot (at output resolution) of a colour that is nowhere else.
        x, y = SPECK_AT[1] * big, SPECK_AT[0] * big
        draw.rectangle([x, y, x + 2 * SUPERSAMPLE - 1, y + 2 * SUPERSAMPLE - 1], fill=(250, 220, 0))
    return image.resize((size, size), Image.LANCZOS), truths


def _jpeg_bytes(image: Image.Image, quality: int = 75) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def _png_base64(image: Image.Image, data_url: bool = False) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"data:image/png;base64,{encoded}" if data_url else encoded


def _match(palette: list[PaletteColor], expected) -> list[PaletteColor]:
    """For each expected colour, the nearest palette colour (asserting it is close)."""
    matched = []
    for colour in expected:
        best = min(palette, key=lambda p: math.dist(p.rgb, colour))
        assert math.dist(best.rgb, colour) < 8.0, (colour, [p.hex for p in palette])
        matched.append(best)
    assert len({p.hex for p in matched}) == len(expected)
    return matched


@pytest.fixture(scope="module")
def painting():
    return _draw_shapes(128, BACKGROUND)


# --- colours ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    ["#d03030", "#D03030", " #d03030 ", "rgb(208, 48, 48)", "RGB(208,48,48)", (208, 48, 48), [208, 48, 48]],
)
def test_parse_color_accepts_all_forms(value):
    assert parse_color(value) == (208, 48, 48)


def test_parse_color_short_hex_and_to_hex():
    assert parse_color("#F0a") == (255, 0, 170)
    assert to_hex((255, 0, 170)) == "#ff00aa"


@pytest.mark.parametrize("value", ["#12345", "red", "rgb(300,0,0)", (1, 2), (1.5, 2, 3), (True, 0, 0), None])
def test_parse_color_rejects_with_field_name(value):
    with pytest.raises(GuidedInputError) as info:
        parse_color(value, "palette[3].color")
    assert info.value.field == "palette[3].color"
    assert str(info.value).startswith("palette[3].color: ")


def test_error_has_field_and_survives_pickling():
    import pickle

    error = GuidedInputError("palette[2].color", "colour #00ff00 is not in the painting")
    assert isinstance(error, ValueError) and error.field == "palette[2].color"
    assert str(error) == "palette[2].color: colour #00ff00 is not in the painting"
    copy = pickle.loads(pickle.dumps(error))
    assert copy.field == error.field and str(copy) == str(error)


# --- loading ---------------------------------------------------------------------------------------


def test_load_from_all_source_kinds_agree(painting, tmp_path):
    image, _ = painting
    expected = np.array(image)
    path = tmp_path / "strokes.png"
    image.save(path)
    sources = [
        image,
        expected,
        expected.astype(np.float32) / 255.0,
        torch.from_numpy(expected).permute(2, 0, 1).float() / 255.0,
        torch.from_numpy(expected).permute(2, 0, 1)[None].float() / 255.0,
        str(path),
        path,
        _png_base64(image),
        _png_base64(image, data_url=True),
    ]
    for source in sources:
        strokes = load_strokes(source)
        assert strokes.rgb.dtype == np.uint8 and strokes.rgb.shape == (128, 128, 3)
        assert strokes.alpha.dtype == bool and strokes.alpha.all()
        np.testing.assert_array_equal(strokes.rgb, expected)


def test_rgba_alpha_threshold():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[0, :, 3] = 255
    rgba[1, :, 3] = 128
    rgba[2, :, 3] = 127
    strokes = load_strokes(rgba)
    assert strokes.alpha[:2].all() and not strokes.alpha[2:].any()


@pytest.mark.parametrize(
    "source, needle",
    [
        ("iVBORw0KGgoAAAANSUhEUgAAAA", "could not decode base64 image data"),
        ("data:image/png;base64,%%%%", "could not decode base64 image data"),
        (base64.b64encode(b"definitely not an image").decode(), "could not decode image data"),
        ("missing_file.png", "not found"),
        (np.zeros((0, 5, 3), np.uint8), "zero size"),
        (np.full((4, 4, 3), 2.0, np.float32), "[0, 1]"),
        (np.zeros((4, 4, 4), np.uint8), "the painting is empty (no opaque pixels)"),
        (torch.rand(2, 3, 4, 4), "batch"),
        (12345, "unsupported painting type"),
    ],
)
def test_load_errors_are_guided_input_errors(source, needle):
    with pytest.raises(GuidedInputError) as info:
        load_strokes(source)
    assert info.value.field == "strokes"
    assert str(info.value).startswith("strokes: ")
    assert needle in str(info.value)


def test_broken_base64_message_names_the_cause():
    with pytest.raises(GuidedInputError, match=r"^strokes: could not decode base64 image data \(.+\)$"):
        load_strokes("iVBORw0KGgoAAAANSUhEUgAAAA")


# --- palette extraction ----------------------------------------------------------------------------


def test_palette_of_antialiased_painting_is_exactly_the_four_colours(painting):
    image, truths = painting
    palette = extract_palette(load_strokes(image))
    assert len(palette) == 4, [p.hex for p in palette]
    background, *shapes = _match(palette, (BACKGROUND, *SHAPE_COLOURS))
    assert palette[0] == background  # sorted by area, the background is largest
    assert [p.fraction for p in palette] == sorted((p.fraction for p in palette), reverse=True)
    assert sum(p.fraction for p in palette) == pytest.approx(1.0)
    for colour, truth in zip(shapes, truths, strict=True):
        assert colour.fraction == pytest.approx(truth.mean(), abs=0.01)
        assert colour.hex == to_hex(colour.rgb)


@pytest.mark.parametrize("transport", ["bytes", "base64", "data-url"])
def test_palette_survives_jpeg_quality_75(painting, transport):
    image, _ = painting
    data = _jpeg_bytes(image, quality=75)
    encoded = base64.b64encode(data).decode()
    source = {"bytes": data, "base64": encoded, "data-url": f"data:image/jpeg;base64,{encoded}"}[transport]
    palette = extract_palette(load_strokes(source))
    assert len(palette) == 4, [p.hex for p in palette]
    _match(palette, (BACKGROUND, *SHAPE_COLOURS))


def test_palette_is_deterministic(painting):
    strokes = load_strokes(_jpeg_bytes(painting[0]))
    assert extract_palette(strokes) == extract_palette(strokes)


def test_tiny_speck_is_dropped():
    image, _ = _draw_shapes(128, BACKGROUND, speck=True)
    for source in (image, _jpeg_bytes(image)):
        strokes = load_strokes(source)
        palette = extract_palette(strokes)
        assert len(palette) == 4, [p.hex for p in palette]
        _match(palette, (BACKGROUND, *SHAPE_COLOURS))
        # The speck is absorbed by the background when snapping.
        labels, snapped = snap_to_palette(strokes, palette)
        row, col = int(SPECK_AT[0] * 128), int(SPECK_AT[1] * 128)
        assert snapped.rgb[row : row + 2, col : col + 2].min() > 200  # sanity: not a shape
        speck_pixels = snapped.rgb[row : row + 2, col : col + 2]
        assert {tuple(p) for p in speck_pixels.reshape(-1, 3)} == {_match(palette, [BACKGROUND])[0].rgb}


def test_thin_line_gets_its_own_colour():
    image, _ = _draw_shapes(128, BACKGROUND)
    # A 3 px line has no flat pixels at all; it must still be found.
    ImageDraw.Draw(image).line([(5, 120), (120, 100)], fill=(240, 200, 40), width=3)
    palette = extract_palette(load_strokes(image))
    assert len(palette) == 5, [p.hex for p in palette]
    _match(palette, (BACKGROUND, *SHAPE_COLOURS, (240, 200, 40)))


def test_rgba_transparent_background_is_not_a_colour():
    image, truths = _draw_shapes(128, (0, 0, 0, 0))
    strokes = load_strokes(_png_base64(image))
    union = np.logical_or.reduce(truths)
    assert (strokes.alpha == union).mean() > 0.99
    palette = extract_palette(strokes)
    assert len(palette) == 3, [p.hex for p in palette]
    _match(palette, SHAPE_COLOURS)
    labels, _ = snap_to_palette(strokes, palette)
    assert (labels[~strokes.alpha] == -1).all() and (labels[strokes.alpha] >= 0).all()


# --- snapping and masks ----------------------------------------------------------------------------


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


@pytest.mark.parametrize("jpeg", [False, True])
def test_snapping_gives_flat_regions_matching_the_shapes(painting, jpeg):
    image, truths = painting
    strokes = load_strokes(_jpeg_bytes(image) if jpeg else image)
    palette = extract_palette(strokes)
    labels, snapped = snap_to_palette(strokes, palette)
    assert labels.shape == (128, 128) and (labels >= 0).all()
    assert {tuple(c) for c in snapped.rgb.reshape(-1, 3)} == {p.rgb for p in palette}
    for colour, truth in zip(_match(palette, SHAPE_COLOURS), truths, strict=True):
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
    purple_index = palette.index(_match(palette, [purple])[0])
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
    for colour, truth in zip(_match(palette, SHAPE_COLOURS), truths, strict=True):
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
    for colour in _match(palette, SHAPE_COLOURS):
        mask = latent[colour.hex]
        assert mask.shape == (16, 16)
        assert ((mask > 0.05) & (mask < 0.95)).any(), "edges of shapes must give partial coverage"
        # Area averaging preserves each colour's area.
        assert float(mask.mean()) == pytest.approx(float(full[colour.hex].mean()), abs=1e-5)


def test_latent_masks_of_rgba_painting_are_zero_where_unpainted():
    image, _ = _draw_shapes(128, (0, 0, 0, 0))
    strokes = load_strokes(image)
    latent = colour_masks(strokes, extract_palette(strokes), size=(32, 32))
    total = torch.stack(list(latent.values())).sum(0)
    assert float(total[0, 0]) == 0.0 and float(total.max()) <= 1.0 + 1e-6


# --- user palettes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def painting_palette(painting):
    return extract_palette(load_strokes(painting[0]))


def test_resolve_palette_binds_user_colours_to_painting_colours(painting_palette):
    entries = [
        {"color": "#d23232", "phrase": "  red barn ", "weight": 1.5},  # a few units off the painted red
        ("#3050c0", "blue lake"),
    ]
    bound = resolve_palette(entries, painting_palette)
    red, blue = _match(painting_palette, [RED, BLUE])
    expected = [(red.hex, "red barn", 1.5), (blue.hex, "blue lake", 1.0)]
    assert [(b.hex, b.phrase, b.weight) for b in bound] == expected
    assert painting_palette[bound[0].index] == red and bound[1].rgb == blue.rgb
    assert resolve_palette([], painting_palette) == []
    assert len(UserPalette.parse(entries)) == 2


def test_unknown_colour_names_field_and_lists_painting_colours(painting_palette):
    with pytest.raises(GuidedInputError) as info:
        resolve_palette([{"color": "#00ff00", "phrase": "grass"}], painting_palette)
    assert info.value.field == "palette[0].color"
    message = str(info.value)
    assert message.startswith("palette[0].color: colour #00ff00 is not in the painting; the painting has ")
    for colour in painting_palette:
        assert colour.hex in message


@pytest.mark.parametrize(
    "entries, field",
    [
        ([("#d03030", "red", float("nan"))], "palette[0].weight"),
        ([("#d03030", "red", 11.0)], "palette[0].weight"),
        ([("#d03030", "red", -0.1)], "palette[0].weight"),
        ([("#d03030", "red", "1.0")], "palette[0].weight"),
        ([("#3050c0", "lake"), ("#d03030", "   ")], "palette[1].phrase"),
        ([("#d03030", None)], "palette[0].phrase"),
        ([("not a colour", "red")], "palette[0].color"),
        ([{"phrase": "red"}], "palette[0].color"),
        ([{"color": "#d03030", "phrase": "red", "wieght": 1}], "palette[0]"),
        ([("#d03030",)], "palette[0]"),
        ("#d03030", "palette"),
    ],
)
def test_user_palette_validation(painting_palette, entries, field):
    with pytest.raises(GuidedInputError) as info:
        resolve_palette(entries, painting_palette)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}: ")


def test_two_entries_on_the_same_painting_colour_are_rejected(painting_palette):
    with pytest.raises(GuidedInputError, match=r"palette\[0\]") as info:
        resolve_palette([("#d03030", "red barn"), ("#d23232", "red roof")], painting_palette)
    assert info.value.field == "palette[1].color"


# --- target at output resolution -------------------------------------------------------------------


def test_resize_strokes_shapes_and_values(painting):
    image, _ = painting
    target, mask = resize_strokes(load_strokes(image), 64, 64)
    assert target.shape == (1, 3, 64, 64) and mask.shape == (1, 1, 64, 64)
    assert target.dtype == torch.float32 and float(target.min()) >= 0 and float(target.max()) <= 1
    assert torch.all(mask == 1)
    # Background corner keeps its colour.
    np.testing.assert_allclose(target[0, :, 0, 0].numpy() * 255, BACKGROUND, atol=1)


def test_resize_strokes_rgba_returns_painted_mask_and_no_dark_fringe():
    image, truths = _draw_shapes(128, (0, 0, 0, 0))
    target, mask = resize_strokes(load_strokes(image), 256, 256)
    assert float(mask[0, 0, 0, 0]) == 0.0 and float(target[..., 0, 0].abs().max()) == 0.0
    assert 0.0 < float(mask.mean()) < 1.0
    # Where partially painted, the colour is the stroke's, not darkened by the transparent black.
    red_edge = (mask[0, 0] > 0.05) & (mask[0, 0] < 0.95) & (target[0, 0] > target[0, 2])
    assert red_edge.any()
    assert float(target[0, 0][red_edge].min()) * 255 > RED[0] - 12


def test_resize_strokes_with_background_fills_unpainted():
    image, _ = _draw_shapes(64, (0, 0, 0, 0))
    target, mask = resize_strokes(load_strokes(image), 64, 64, background="#ffffff")
    assert torch.all(mask == 1)
    assert torch.allclose(target[0, :, 0, 0], torch.ones(3))


def test_resize_strokes_rejects_aspect_ratio_mismatch(painting):
    with pytest.raises(GuidedInputError) as info:
        resize_strokes(load_strokes(painting[0]), 768, 512)
    assert info.value.field == "strokes"
    assert "1.000" in str(info.value) and "1.500" in str(info.value)
    # Within 1% is fine (e.g. rounding to multiples of 8).
    strokes = StrokeImage(np.zeros((100, 101, 3), np.uint8), np.ones((100, 101), bool))
    assert resize_strokes(strokes, 512, 512)[0].shape == (1, 3, 512, 512)


@pytest.mark.parametrize("width, height, field", [(0, 64, "width"), (64, -1, "height"), (64.0, 64, "width")])
def test_resize_strokes_rejects_bad_sizes(painting, width, height, field):
    with pytest.raises(GuidedInputError) as info:
        resize_strokes(load_strokes(painting[0]), width, height)
    assert info.value.field == field
