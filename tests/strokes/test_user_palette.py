"""User palettes: validating colour -> phrase bindings and binding them to the painting's colours."""

from __future__ import annotations

import pytest

from lib_guided.errors import GuidedInputError
from lib_guided.strokes.io import load_strokes
from lib_guided.strokes.palette import extract_palette
from lib_guided.strokes.user_palette import UserPalette, resolve_palette
from tests.paintings import BACKGROUND, BLUE, RED, closest, draw_shapes


@pytest.fixture(scope="module")
def painting():
    return draw_shapes(128, BACKGROUND)


@pytest.fixture(scope="module")
def painting_palette(painting):
    return extract_palette(load_strokes(painting[0]))


def test_resolve_palette_binds_user_colours_to_painting_colours(painting_palette):
    entries = [
        {"color": "#d23232", "phrase": "  red barn ", "weight": 1.5},  # a few units off the painted red
        ("#3050c0", "blue lake"),
    ]
    bound = resolve_palette(entries, painting_palette)
    red, blue = closest(painting_palette, [RED, BLUE])
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


@pytest.mark.parametrize(
    "phrase, syntax",
    [
        ("salt AND pepper", "AND"),
        ("(red barn:1.3)", "("),
        ("barn <lora:x:1>", "<"),
        ("[barn|shed]", "["),
        ("barn BREAK lake", "BREAK"),
        ("a\\(b", "\\"),
    ],
)
def test_phrases_carrying_prompt_syntax_are_refused(phrase, syntax):
    with pytest.raises(GuidedInputError) as info:
        UserPalette.parse([{"color": "#d03030", "phrase": phrase}])
    assert info.value.field == "palette[0].phrase"
    assert f"contains prompt syntax {syntax!r}" in str(info.value)


def test_plain_phrases_with_and_in_lower_case_are_words():
    assert UserPalette.parse([{"color": "#d03030", "phrase": "salt and pepper, red"}])
