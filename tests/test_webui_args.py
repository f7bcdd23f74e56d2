"""The WebUI adapter's argument parsing (pure Python: no WebUI needed)."""

import pytest

from lib_guided.errors import GuidedInputError
from lib_guided.params import FIELDS
from lib_guided.webui.args import parse_script_args


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
