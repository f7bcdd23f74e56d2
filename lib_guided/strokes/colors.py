"""Colours: parse user colour values, format them as hex, measure distances between them."""

from __future__ import annotations

import numbers
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from lib_guided.errors import GuidedInputError

RGB = tuple[int, int, int]

_HEX_RE = re.compile(r"#([0-9a-f]{3}|[0-9a-f]{6})", re.IGNORECASE)
_RGB_FUNC_RE = re.compile(r"rgb\(\s*(\d{1,3})\s*,\s*(\d{1,3})\s*,\s*(\d{1,3})\s*\)", re.IGNORECASE)
_COLOUR_FORMATS = "use '#rrggbb', '#rgb', 'rgb(r, g, b)' or an (r, g, b) tuple of ints 0..255"


class HasRGB:
    """Base of the palette records that carry an ``rgb`` colour; ``parse_color`` takes them as they are."""

    rgb: RGB


def parse_color(value: Any, field: str = "color") -> RGB:
    """Parse ``#rrggbb``, ``#rgb``, ``rgb(r,g,b)``, an (r, g, b) sequence or a palette object."""
    if isinstance(value, HasRGB):
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


def parse_colors(colors: Sequence[Any], field: str) -> np.ndarray:
    """A list of colours as a float64 Kx3 array; item ``i`` is reported as ``field[i]``."""
    if colors is None or isinstance(colors, (str, bytes)):
        raise GuidedInputError(field, "expected a list of colours")
    rows = [parse_color(item, f"{field}[{i}]") for i, item in enumerate(colors)]
    return np.array(rows, dtype=np.float64).reshape(-1, 3)


def to_hex(rgb: Sequence[int]) -> str:
    """``(208, 48, 48) -> "#d03030"`` (lower case)."""
    r, g, b = parse_color(tuple(rgb), "color")
    return f"#{r:02x}{g:02x}{b:02x}"


def rgb_tuple(colour: np.ndarray) -> RGB:
    """A float colour rounded to the nearest RGB, clipped to 0..255."""
    r, g, b = (int(v) for v in np.clip(np.rint(colour), 0, 255))
    return (r, g, b)


def colour_distance(colours: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Euclidean RGB distance along the last axis (broadcasting)."""
    return np.sqrt(((colours - centre) ** 2).sum(axis=-1))


def distance_to_segment(colours: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Distance of each colour to the RGB segment start..end (where anti-aliased blends lie)."""
    direction = end - start
    length_sq = float(direction @ direction)
    if length_sq == 0.0:
        return colour_distance(colours, start)
    t = np.clip(((colours - start) @ direction) / length_sq, 0.0, 1.0)
    return colour_distance(colours, start + t[..., None] * direction)
