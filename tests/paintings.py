"""Test paintings: three anti-aliased shapes on a background, and helpers to encode and compare them."""

from __future__ import annotations

import base64
import io
import math

import numpy as np
from PIL import Image, ImageDraw

from lib_guided.strokes.palette import PaletteColor

BACKGROUND = (235, 230, 210)
RED = (208, 48, 48)
BLUE = (48, 80, 192)
GREEN = (60, 170, 70)
SHAPE_COLOURS = (RED, BLUE, GREEN)
SUPERSAMPLE = 4
SPECK_AT = (0.62, 0.75)  # (row, column) as fractions, on the background


def draw_shapes(size: int, background, speck: bool = False):
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


def jpeg_bytes(image: Image.Image, quality: int = 75) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def png_base64(image: Image.Image, data_url: bool = False) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"data:image/png;base64,{encoded}" if data_url else encoded


def closest(palette: list[PaletteColor], expected) -> list[PaletteColor]:
    """For each expected colour, the nearest palette colour (asserting it is close)."""
    matched = []
    for colour in expected:
        best = min(palette, key=lambda p: math.dist(p.rgb, colour))
        assert math.dist(best.rgb, colour) < 8.0, (colour, [p.hex for p in palette])
        matched.append(best)
    assert len({p.hex for p in matched}) == len(expected)
    return matched
