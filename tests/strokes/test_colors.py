"""Colour parsing and hex formatting; errors name their field."""

from __future__ import annotations

import pytest

from lib_guided.errors import GuidedInputError
from lib_guided.strokes.colors import parse_color, to_hex


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
