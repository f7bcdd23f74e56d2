"""User palettes: validate colour -> phrase bindings and bind them to the painting's colours."""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lib_guided.errors import GuidedInputError, shown
from lib_guided.strokes.colors import (
    RGB,
    HasRGB,
    colour_distance,
    parse_color,
    parse_colors,
    rgb_tuple,
    to_hex,
)
from lib_guided.strokes.palette_pixels import DEFAULT_TOLERANCE, check_tolerance

MAX_WEIGHT = 10.0


@dataclass(frozen=True)
class PaletteEntry(HasRGB):
    """One validated user binding: a colour, the phrase it stands for and its weight."""

    rgb: RGB
    phrase: str
    weight: float = 1.0

    @property
    def hex(self) -> str:
        return to_hex(self.rgb)


@dataclass(frozen=True)
class BoundRegion(HasRGB):
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


# A phrase is appended to the prompt as text, so prompt syntax in it would change the whole prompt:
# "salt AND pepper" makes an AND composition, "(barn" opens an emphasis, "<lora:x:1>" loads a LoRA.
_PROMPT_SYNTAX = re.compile(r"[()\[\]{}<>:|\\]|\bAND\b|\bBREAK\b")


def _check_phrase(phrase: Any, field: str) -> str:
    if not isinstance(phrase, str):
        raise GuidedInputError(field, f"must be a string, got {type(phrase).__name__}")
    if not phrase.strip():
        raise GuidedInputError(field, "must not be empty")
    syntax = _PROMPT_SYNTAX.search(phrase)
    if syntax:
        raise GuidedInputError(
            field,
            f"contains prompt syntax {syntax.group()!r}; a phrase is plain words (it is matched in, "
            "or appended to, the prompt as text)",
        )
    return phrase.strip()


def _check_weight(weight: Any, field: str) -> float:
    if isinstance(weight, (bool, np.bool_)) or not isinstance(weight, numbers.Real):
        raise GuidedInputError(field, f"must be a number, got {shown(weight)}")
    try:
        value = float(weight)
    except OverflowError:  # an int beyond float range
        value = math.inf
    if not math.isfinite(value) or not 0.0 <= value <= MAX_WEIGHT:
        raise GuidedInputError(field, f"must be a finite number in [0, {MAX_WEIGHT:g}], got {shown(weight)}")
    return value


def resolve_palette(
    entries: Any, painting_palette: Sequence[Any], tolerance: float = DEFAULT_TOLERANCE
) -> list[BoundRegion]:
    """Bind each user colour to the nearest painting colour (within ``tolerance``).

    The returned ``hex``/``rgb`` are the painting's colour, so they key into ``colour_masks``.
    """
    user = UserPalette.parse(entries)
    check_tolerance(tolerance)
    painting = parse_colors(painting_palette, "painting_palette")
    painting_hexes = [to_hex(rgb_tuple(c)) for c in painting]
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
        rgb = rgb_tuple(painting[index])
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
    distances = colour_distance(painting, np.array(entry.rgb, dtype=np.float64))
    index = int(np.argmin(distances))
    if distances[index] > tolerance:
        raise GuidedInputError(
            field,
            f"colour {entry.hex} is not in the painting; the painting has {', '.join(painting_hexes)} "
            f"(nearest {painting_hexes[index]} is {distances[index]:.0f} away, tolerance {tolerance:g})",
        )
    return index
