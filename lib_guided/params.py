"""The extension's parameters: one declaration drives validation, the UI, the API and the infotext.

Each :class:`Field` says its type, default, range, UI label and infotext key; :class:`GuidedParams`
is the validated value object the WebUI adapter and the API build from user input.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Any

from lib_guided.edit_job import BLEND_MASKS, EditSettings
from lib_guided.errors import GuidedInputError, shown
from lib_guided.gradop.decoders.factory import DECODERS
from lib_guided.gradop.optimise import OPTIMISERS, TARGETS, GradOPSettings
from lib_guided.inversion.invert import SOLVERS, InversionSettings
from lib_guided.palette_text import format_palette, parse_palette
from lib_guided.regions.attention import REGION_MODES
from lib_guided.stroke_job import PAINTINGS, StrokeSettings

MODES = ("off", "strokes", "edit")
HIRES_PASSES = ("first", "second", "both")
ODD_FIELDS = frozenset({"blur_size"})  # kernel sizes: a slider from 3 in steps of 2 makes only these
# Values older versions wrote into infotexts, read as what they meant then: blur 0 was "auto" = 35.
LEGACY_VALUES = {"blur_size": {0: 35}}
# What a field meant in infotexts written before it existed (such images were made that way).
BEFORE_FIELD_EXISTED = {"region_mode": "bias", "optimiser": "adam"}


@dataclass(frozen=True)
class Field:
    name: str
    kind: type  # bool, int, float, str, list (palette) or object (image)
    default: Any
    label: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[str, ...] | None = None
    infotext: str | None = None  # key in the PNG info; None = not written (the painting)
    help: str = ""

    @property
    def group(self) -> str:
        """ "strokes", "edit" or "common": a field is written (and shown) only in its mode."""
        if self.name in STROKES_FIELDS:
            return "strokes"
        return "edit" if self.name in EDIT_FIELDS else "common"


STROKES_FIELDS = frozenset(
    "strokes palette strength injection_steps adam_steps lr blur_size painting target decoder region_weight "
    "colour_tolerance hires_pass region_mode optimiser".split()
)
EDIT_FIELDS = frozenset(
    "source_prompt inversion_cfg edit_cfg solver max_iter tol window blend_mask eta "
    "return_reconstruction attention_injection".split()
)


# Every default is declared once, on the settings dataclass that uses it; the fields read it from there.
_GRADOP, _STROKE, _INVERSION, _EDIT = GradOPSettings(), StrokeSettings(), InversionSettings(), EditSettings()

FIELDS: tuple[Field, ...] = (
    Field("enabled", bool, False, "Enable guided synthesis", infotext="Guided enabled"),
    Field("mode", str, "strokes", "Mode", choices=MODES, infotext="Guided mode"),
    Field("strokes", object, None, "Stroke painting", help="image, or base64 PNG/JPEG in the API"),
    Field(
        "palette",
        list,
        (),
        "Palette",
        infotext="Guided palette",
        help='list of {"color": "#rrggbb", "phrase": str, "weight": float}',
    ),
    Field(
        "strength",
        float,
        _GRADOP.strength,
        "Strength (start = steps x (1 - strength))",
        0.0,
        1.0,
        0.01,
        infotext="Guided strength",
    ),
    Field(
        "injection_steps", int, _GRADOP.injection_steps, "Injection steps K", 0, 20, 1, infotext="Guided K"
    ),
    Field("adam_steps", int, _GRADOP.adam_steps, "Adam steps N", 0, 100, 1, infotext="Guided N"),
    Field("lr", float, _GRADOP.lr, "Learning rate", 0.001, 1.0, 0.001, infotext="Guided lr"),
    Field(
        "blur_size",
        int,
        _STROKE.blur_size,
        "Blur kernel at 512 px (scaled with the image)",
        *StrokeSettings.BOUNDS["blur_size"],
        2,
        infotext="Guided blur",
    ),
    Field(
        "painting", str, _STROKE.painting, "Painting function", choices=PAINTINGS, infotext="Guided painting"
    ),
    Field("target", str, _GRADOP.target, "Gradient target", choices=TARGETS, infotext="Guided target"),
    Field(
        "decoder",
        str,
        _STROKE.decoder,
        "Decoder for the gradient",
        choices=DECODERS,
        infotext="Guided decoder",
    ),
    Field(
        "region_weight",
        float,
        _STROKE.region_weight,
        "Region control weight",
        *StrokeSettings.BOUNDS["region_weight"],
        0.05,
        infotext="Guided region weight",
    ),
    Field(
        "colour_tolerance",
        float,
        _STROKE.colour_tolerance,
        "Colour tolerance",
        *StrokeSettings.BOUNDS["colour_tolerance"],
        1.0,
        infotext="Guided colour tolerance",
    ),
    Field("hires_pass", str, "first", "Hires fix pass", choices=HIRES_PASSES, infotext="Guided hires pass"),
    Field("source_prompt", str, "", "Source prompt (what the image shows)", infotext="Guided source prompt"),
    Field(
        "inversion_cfg",
        float,
        _INVERSION.inversion_cfg,
        "Inversion CFG",
        0.0,
        30.0,
        0.1,
        infotext="Guided inversion CFG",
    ),
    Field("edit_cfg", float, _EDIT.edit_cfg, "Edit CFG", 0.0, 30.0, 0.1, infotext="Guided edit CFG"),
    Field("solver", str, _INVERSION.solver, "Inversion solver", choices=SOLVERS, infotext="Guided solver"),
    Field("max_iter", int, _INVERSION.max_iter, "Iterations cap", 1, 100, 1, infotext="Guided max iter"),
    Field("tol", float, _INVERSION.tol, "Residual tolerance", 1e-8, 1.0, None, infotext="Guided tol"),
    Field("window", int, _INVERSION.window, "Anderson window", 1, 10, 1, infotext="Guided window"),
    Field(
        "blend_mask", str, _EDIT.blend_mask, "Blend mask", choices=BLEND_MASKS, infotext="Guided blend mask"
    ),
    Field(
        "eta", float, _EDIT.eta, "Stochastic eta", *EditSettings.BOUNDS["eta"], 0.01, infotext="Guided eta"
    ),
    Field(
        "return_reconstruction",
        bool,
        False,
        "Also return the reconstruction and its PSNR",
        infotext="Guided reconstruction",
    ),
    # last, so that positional API calls written before it still line up
    Field(
        "attention_injection",
        float,
        _EDIT.attention_injection,
        "Attention injection (share of steps)",
        *EditSettings.BOUNDS["attention_injection"],
        0.05,
        infotext="Guided attention injection",
        help="the edit keeps the reconstruction's attention maps for this share of the steps (0 = off)",
    ),
    Field(
        "region_mode",
        str,
        _STROKE.region_mode,
        "Region control mode",
        choices=REGION_MODES,
        infotext="Guided region mode",
        help="prompts: each painted region attends to its phrase encoded on its own (the lab's winner); "
        "bias: paint with words; masked: bound tokens hidden outside their regions",
    ),
    Field(
        "optimiser",
        str,
        _GRADOP.optimiser,
        "Gradient optimiser",
        choices=OPTIMISERS,
        infotext="Guided optimiser",
        help="adam: the paper's; normalised: steepest descent, each image's step of RMS lr",
    ),
)
FIELD_BY_NAME = {f.name: f for f in FIELDS}


def _default(name: str) -> Any:
    return FIELD_BY_NAME[name].default


@dataclass(frozen=True)
class GuidedParams:
    enabled: bool = _default("enabled")
    mode: str = _default("mode")
    strokes: Any = _default("strokes")
    palette: tuple = _default("palette")
    strength: float = _default("strength")
    injection_steps: int = _default("injection_steps")
    adam_steps: int = _default("adam_steps")
    lr: float = _default("lr")
    blur_size: int = _default("blur_size")
    painting: str = _default("painting")
    target: str = _default("target")
    decoder: str = _default("decoder")
    region_weight: float = _default("region_weight")
    colour_tolerance: float = _default("colour_tolerance")
    hires_pass: str = _default("hires_pass")
    source_prompt: str = _default("source_prompt")
    inversion_cfg: float = _default("inversion_cfg")
    edit_cfg: float = _default("edit_cfg")
    solver: str = _default("solver")
    max_iter: int = _default("max_iter")
    tol: float = _default("tol")
    window: int = _default("window")
    blend_mask: str = _default("blend_mask")
    eta: float = _default("eta")
    return_reconstruction: bool = _default("return_reconstruction")
    attention_injection: float = _default("attention_injection")
    region_mode: str = _default("region_mode")
    optimiser: str = _default("optimiser")

    def __post_init__(self) -> None:
        for f in fields(self):
            object.__setattr__(self, f.name, coerce(FIELD_BY_NAME[f.name], getattr(self, f.name)))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GuidedParams:
        """From the API's named form; unknown keys are an error (a typo must not be ignored)."""
        if not isinstance(values, dict):
            raise GuidedInputError(
                "args", f"expected a dict of named parameters, got {type(values).__name__}"
            )
        unknown = sorted(set(values) - set(FIELD_BY_NAME))
        if unknown:
            raise GuidedInputError(unknown[0], f"unknown parameter; known: {', '.join(FIELD_BY_NAME)}")
        return cls(**values)

    @classmethod
    def from_positional(cls, values: list | tuple) -> GuidedParams:
        """From the UI's positional args, in :data:`FIELDS` order (missing trailing ones: defaults)."""
        if len(values) > len(FIELDS):
            raise GuidedInputError(
                "args", f"expected at most {len(FIELDS)} positional args, got {len(values)}"
            )
        return cls(**{f.name: v for f, v in zip(FIELDS, values, strict=False)})

    def gradop_settings(self) -> GradOPSettings:
        return GradOPSettings(
            self.strength,
            self.injection_steps,
            self.adam_steps,
            self.lr,
            self.target,
            optimiser=self.optimiser,
        )

    def stroke_settings(self) -> StrokeSettings:
        return StrokeSettings(
            self.painting,
            self.blur_size,
            self.decoder,
            self.region_weight,
            self.colour_tolerance,
            self.region_mode,
        )

    def edit_settings(self) -> EditSettings:
        return EditSettings(self.edit_cfg, self.eta, self.blend_mask, self.attention_injection)

    def inversion_settings(self, steps: int) -> InversionSettings:
        return InversionSettings(self.solver, steps, self.inversion_cfg, self.tol, self.max_iter, self.window)

    def infotext(self) -> dict[str, Any]:
        """PNG-info entries (the painting itself is not stored: it says so)."""
        out: dict[str, Any] = {}
        for f in FIELDS:
            if f.infotext is None or f.group not in ("common", self.mode):
                continue
            value = getattr(self, f.name)
            out[f.infotext] = format_palette(value) if f.name == "palette" else value
        if self.mode == "strokes":
            out["Guided strokes"] = "not stored (paste the painting again)"
        return out


def newer_field_from_infotext(field: Field, values: dict[str, Any]) -> Any:
    """A field added later, read from a pasted infotext: its value, the value it had before it existed when
    the infotext is one of ours without it (the image was made that way), else None (not our image)."""
    if field.infotext in values:
        return values[field.infotext]
    if "Guided enabled" in values:
        return BEFORE_FIELD_EXISTED[field.name]
    return None


def coerce(field: Field, value: Any) -> Any:
    """Validate one value against its field, converting API-friendly forms (e.g. "0.5", 1 -> True)."""
    if value is None:
        value = field.default
    legacy = LEGACY_VALUES.get(field.name, {})
    if not isinstance(value, bool) and isinstance(value, (int, float, str)):
        value = legacy.get(_legacy_key(value), value)
    if field.kind is object:
        return value
    if field.kind is list:
        return parse_palette(value)
    if field.kind is bool:
        return _as_bool(field, value)
    if field.kind is str:
        if not isinstance(value, str):
            raise GuidedInputError(field.name, f"expected text, got {type(value).__name__}")
        if field.choices is not None:
            value = value.strip().lower()
            if value not in field.choices:
                raise GuidedInputError(
                    field.name, f"must be one of {', '.join(field.choices)}, got {value!r}"
                )
        return value
    return _as_number(field, value)


def _legacy_key(value: Any) -> Any:
    try:
        return float(value)
    except (ValueError, OverflowError):
        return None


def _as_bool(field: Field, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise GuidedInputError(field.name, f"expected true or false, got {value!r}")


def _as_number(field: Field, value: Any) -> int | float:
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise GuidedInputError(field.name, f"expected a number, got {shown(value)}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range: out of range like any other too-large value
        number = math.inf if value > 0 else -math.inf
    except (TypeError, ValueError):
        raise GuidedInputError(field.name, f"expected a number, got {shown(value)}") from None
    if math.isnan(number) or (math.isinf(number) and isinstance(value, str)):
        raise GuidedInputError(field.name, f"must be finite, got {shown(value)}")
    if field.kind is int and math.isfinite(number):
        if number != int(number):
            raise GuidedInputError(field.name, f"expected a whole number, got {shown(value)}")
        number = int(number)
    if (field.low is not None and number < field.low) or (field.high is not None and number > field.high):
        raise GuidedInputError(field.name, f"must be in [{field.low:g}, {field.high:g}], got {shown(value)}")
    if not math.isfinite(number):
        raise GuidedInputError(field.name, f"must be finite, got {shown(value)}")
    if field.name in ODD_FIELDS and number % 2 == 0:
        raise GuidedInputError(field.name, f"must be an odd number, got {shown(value)}")
    return number
