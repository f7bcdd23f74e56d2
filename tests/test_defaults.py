"""Every setting's default is declared once (on its settings dataclass); the UI/API fields, the CLI, the
pipeline and the lab read it. This checks they all agree, so a default restated anywhere cannot drift."""

import inspect

import pytest

from lib_guided.cli import build_parser
from lib_guided.edit_job import EditSettings
from lib_guided.errors import GuidedInputError
from lib_guided.gradop.optimise import GradOPSettings
from lib_guided.inversion.invert import InversionSettings
from lib_guided.lab.synthesis_eval import SynthesisSetting
from lib_guided.params import FIELD_BY_NAME, GuidedParams
from lib_guided.pipeline import edit_image, generate
from lib_guided.stroke_job import StrokeSettings

# field name -> (settings dataclass, CLI subcommand, CLI option dest)
OWNERS = {
    "strength": (GradOPSettings, "generate", "strength"),
    "injection_steps": (GradOPSettings, "generate", "injection_steps"),
    "adam_steps": (GradOPSettings, "generate", "adam_steps"),
    "lr": (GradOPSettings, "generate", "lr"),
    "target": (GradOPSettings, "generate", "target"),
    "optimiser": (GradOPSettings, "generate", "optimiser"),
    "painting": (StrokeSettings, "generate", "painting"),
    "blur_size": (StrokeSettings, "generate", "blur_size"),
    "decoder": (StrokeSettings, "generate", "gradient_decoder"),
    "region_weight": (StrokeSettings, "generate", "region_weight"),
    "colour_tolerance": (StrokeSettings, "generate", "colour_tolerance"),
    "region_mode": (StrokeSettings, "generate", "region_mode"),
    "solver": (InversionSettings, "edit", "solver"),
    "inversion_cfg": (InversionSettings, "edit", "inversion_cfg"),
    "tol": (InversionSettings, "edit", "tol"),
    "max_iter": (InversionSettings, "edit", "max_iter"),
    "window": (InversionSettings, "edit", "window"),
    "edit_cfg": (EditSettings, "edit", "edit_cfg"),
    "eta": (EditSettings, "edit", "eta"),
    "attention_injection": (EditSettings, "edit", "attention_injection"),
    "blend_mask": (EditSettings, None, None),  # the CLI takes a mask file instead
}


def cli_defaults(command: str) -> dict:
    required = {
        "generate": ["--prompt", "p", "--out", "o.png"],
        "edit": ["--image", "i.png", "--source-prompt", "s", "--prompt", "p", "--out", "o.png"],
    }
    return vars(build_parser().parse_args([command, *required[command]]))


@pytest.mark.parametrize("name", sorted(OWNERS))
def test_field_cli_and_params_read_the_settings_default(name):
    owner, command, dest = OWNERS[name]
    declared = getattr(owner(), name)
    assert FIELD_BY_NAME[name].default == declared
    assert getattr(GuidedParams(), name) == declared
    if command is not None:
        assert cli_defaults(command)[dest] == declared


def test_every_tunable_field_has_one_owner():
    ui_only = {
        "enabled",
        "mode",
        "strokes",
        "palette",
        "hires_pass",
        "source_prompt",
        "return_reconstruction",
    }
    assert set(FIELD_BY_NAME) == set(OWNERS) | ui_only


def test_pipeline_and_lab_read_the_same_defaults():
    edit_defaults = inspect.signature(edit_image).parameters
    assert edit_defaults["edit_cfg"].default == EditSettings().edit_cfg
    assert edit_defaults["eta"].default == EditSettings().eta
    gen = inspect.signature(generate).parameters
    assert cli_defaults("generate")["steps"] == gen["steps"].default
    assert cli_defaults("generate")["cfg"] == gen["cfg"].default
    assert cli_defaults("edit")["steps"] == InversionSettings().steps
    lab = SynthesisSetting("gradop+", "default")
    assert lab.gradop() == GradOPSettings()


def test_shared_ranges_are_declared_once_on_their_dataclass():
    owners = (StrokeSettings, EditSettings)
    bounded = {name: bounds for owner in owners for name, bounds in owner.BOUNDS.items()}
    assert set(bounded) == {"blur_size", "region_weight", "colour_tolerance", "eta", "attention_injection"}
    for name, (low, high) in bounded.items():
        field = FIELD_BY_NAME[name]
        assert (field.low, field.high) == (low, high), name
        owner = next(o for o in owners if name in o.BOUNDS)
        for outside in (low - 1, high + 1):
            with pytest.raises(GuidedInputError, match=f"^{name}"):
                owner(**{name: outside})
