"""The WebUI adapter's argument parsing (pure Python: no WebUI needed)."""

import pytest

from lib_guided.adapters.webui.args import parse_script_args
from lib_guided.errors import GuidedInputError
from lib_guided.params import FIELDS
from lib_guided.strokes.user_palette import UserPalette


def ui_args(**changes):
    values = {f.name: f.default for f in FIELDS}
    values.update(changes)
    return tuple(values[f.name] for f in FIELDS)


def test_positional_ui_args_with_a_palette_table():
    table = [["#d03030", "red barn", 1.5], ["#3050c0", "", ""], ["", "", ""]]
    p = parse_script_args(ui_args(enabled=True, palette=table, lr=0.2))
    assert p.enabled and p.lr == 0.2
    assert p.palette == ({"color": "#d03030", "phrase": "red barn", "weight": 1.5},)


def test_api_dict_wins_over_the_defaults_that_follow_it():
    # the WebUI pads API args with UI defaults after the ones given
    args = ({"enabled": True, "mode": "edit", "edit_cfg": 9}, *ui_args()[1:])
    p = parse_script_args(args)
    assert (p.enabled, p.mode, p.edit_cfg) == (True, "edit", 9.0)


def test_canvas_dict_and_xyz_overrides():
    p = parse_script_args(ui_args(strokes={"image": "PIL", "mask": None}), overrides={"adam_steps": 4})
    assert p.strokes == "PIL" and p.adam_steps == 4


def test_bad_api_values_are_named():
    with pytest.raises(GuidedInputError, match="^region_weight"):
        parse_script_args(({"enabled": True, "region_weight": 11},))


@pytest.mark.parametrize(
    "palette, field",
    [
        (5, "palette"),
        ([None], "palette[0]"),
        (["abc"], "palette[0]"),
        ([["#d03030", "barn", 1, 2]], "palette[0]"),
        ([{"color": "#d03030", "phrase": "barn", "weight": 10**400}], "palette[0].weight"),
    ],
)
def test_malformed_palettes_are_named_not_run_without_the_extension(palette, field):
    # these used to raise TypeError (the WebUI then generated without us) or bind colour 'a' to phrase 'b'
    with pytest.raises(GuidedInputError) as info:
        UserPalette.parse(parse_script_args(({"enabled": True, "palette": palette},)).palette)
    assert info.value.field == field
    assert len(str(info.value)) < 300


@pytest.mark.parametrize("name", ["adam_steps", "lr", "strength", "tol"])
def test_huge_integers_are_out_of_range_with_a_short_message(name):
    with pytest.raises(GuidedInputError, match=rf"^{name}: must be in \[.*\], got 1{'0' * 36}\.\.\.$"):
        parse_script_args(({"enabled": True, name: 10**400},))


def test_blur_is_odd_and_legacy_zero_means_the_default():
    assert parse_script_args(({"enabled": True, "blur_size": 0},)).blur_size == 35  # older infotexts
    assert parse_script_args(({"enabled": True, "blur_size": 21},)).blur_size == 21
    with pytest.raises(GuidedInputError, match="^blur_size: must be an odd number, got 20$"):
        parse_script_args(({"enabled": True, "blur_size": 20},))
