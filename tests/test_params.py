import math

import pytest

from lib_guided.errors import GuidedInputError
from lib_guided.inversion.invert import InversionSettings
from lib_guided.palette_text import format_palette, parse_palette
from lib_guided.params import FIELD_BY_NAME, FIELDS, GuidedParams, newer_field_from_infotext

PALETTE = [{"color": "#d03030", "phrase": "red barn", "weight": 1.5}, {"color": "#3050c0", "phrase": "lake"}]


def test_defaults_match_the_reference_and_the_core_settings():
    p = GuidedParams()
    assert (p.strength, p.injection_steps, p.adam_steps) == (0.8, 3, 12)  # the reference's
    assert (p.optimiser, p.lr) == ("normalised", 0.05)  # the lab's step (README, "GradOP+ levers")
    assert (p.inversion_cfg, p.edit_cfg, p.solver) == (1.0, 7.5, "aidi-a")
    assert p.gradop_settings().injection_range(50) == range(10, 13)
    assert p.inversion_settings(20).steps == 20
    assert [f.name for f in FIELDS] == list(GuidedParams.__dataclass_fields__)


def test_named_and_positional_forms_agree():
    named = GuidedParams.from_dict({"enabled": True, "mode": "strokes", "palette": PALETTE, "lr": "0.07"})
    positional = GuidedParams.from_positional([True, "strokes", None, PALETTE, 0.8, 3, 12, 0.07])
    assert named == positional
    assert named.lr == 0.07 and named.palette[1] == {"color": "#3050c0", "phrase": "lake", "weight": 1.0}


def test_infotext_round_trips_every_written_field():
    p = GuidedParams(enabled=True, palette=PALETTE, strength=0.65, solver="aidi-e", tol=1e-4, eta=0.2)
    info = p.infotext()
    assert info["Guided strokes"].startswith("not stored")
    assert "Guided solver" not in info  # edit-mode fields stay out of a strokes run's infotext
    restored = {f.name: info[f.infotext] for f in FIELDS if f.infotext in info}
    back = GuidedParams(**restored)
    assert back == GuidedParams(
        **{**p.__dict__, "strokes": None, "solver": "aidi-a", "tol": InversionSettings.tol, "eta": 0.0}
    )
    edit = GuidedParams(enabled=True, mode="edit", solver="aidi-e", tol=1e-4, eta=0.2, edit_cfg=9)
    edit_info = edit.infotext()
    assert "Guided strokes" not in edit_info and "Guided lr" not in edit_info
    assert GuidedParams(**{f.name: edit_info[f.infotext] for f in FIELDS if f.infotext in edit_info}) == edit
    assert format_palette(back.palette) == "#d03030=red barn:1.5; #3050c0=lake:1"


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"strength": 1.5}, "strength"),
        ({"adam_steps": 2.5}, "adam_steps"),
        ({"lr": math.nan}, "lr"),
        ({"lr": "fast"}, "lr"),
        ({"solver": "newton"}, "solver"),
        ({"enabled": "maybe"}, "enabled"),
        ({"wieght": 1}, "wieght"),
        ({"palette": "red barn"}, "palette[0]"),
        ({"palette": [{"color": "#fff"}, 3]}, "palette[1]"),
        ({"edit_cfg": -1}, "edit_cfg"),
        ({"region_mode": "hard"}, "region_mode"),
        ({"optimiser": "sgd"}, "optimiser"),
    ],
)
def test_bad_values_name_their_field(values, field):
    with pytest.raises(GuidedInputError) as err:
        GuidedParams.from_dict(values)
    assert err.value.field == field, str(err.value)


def test_region_mode_is_written_and_reaches_the_stroke_settings():
    p = GuidedParams(enabled=True, region_mode="Masked")
    assert p.region_mode == "masked" and p.stroke_settings().region_mode == "masked"
    assert p.infotext()["Guided region mode"] == "masked"
    assert GuidedParams().stroke_settings().region_mode == "prompts"  # the lab's winner (README)
    field = FIELD_BY_NAME["region_mode"]
    assert (
        newer_field_from_infotext(field, {"Guided enabled": True, "Guided region mode": "masked"}) == "masked"
    )
    # an image of an older version, which knew only the bias, is read back as made
    assert newer_field_from_infotext(field, {"Guided enabled": True, "Guided lr": 0.1}) == "bias"
    assert newer_field_from_infotext(field, {"Steps": 20}) is None  # not our image: the field stays as it is


def test_optimiser_is_written_reaches_the_gradop_settings_and_old_images_read_as_adam():
    p = GuidedParams(enabled=True, optimiser="Normalised")
    assert p.optimiser == "normalised" and p.gradop_settings().optimiser == "normalised"
    assert p.infotext()["Guided optimiser"] == "normalised"
    field = FIELD_BY_NAME["optimiser"]
    # an image made before the choice existed was made with the paper's Adam
    assert newer_field_from_infotext(field, {"Guided enabled": True, "Guided lr": 0.1}) == "adam"


def test_palette_text_form():
    assert parse_palette("#d03030=red barn:2; #3050c0=lake") == (
        {"color": "#d03030", "phrase": "red barn", "weight": 2.0},
        {"color": "#3050c0", "phrase": "lake", "weight": 1.0},
    )
    with pytest.raises(GuidedInputError, match=r"palette\[0\]\.weight"):
        parse_palette("#d03030=barn:heavy")
