"""X/Y/Z plot axes for the main Guided Synthesis sliders.

The WebUI's built-in "X/Y/Z plot" script keeps its axes in ``axis_options``; extensions append to
it once every script is loaded (``on_before_ui``). An axis value lands in ``p._guided_overrides``,
which the script merges over its UI/API args, so each grid cell is validated and written to the
infotext like any other run. The plot does not switch the extension on: enable it as usual.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lib_guided.adapters.webui.host_choices import check_host_choice, choices_for
from lib_guided.errors import GuidedInputError
from lib_guided.params import FIELD_BY_NAME, Field, coerce

OVERRIDES_ATTR = "_guided_overrides"
LABEL_PREFIX = "[Guided] "

# (field, tabs): "both", or "img2img" for the AIDI edit mode's settings
AXES: tuple[tuple[str, str], ...] = (
    ("strength", "both"),
    ("injection_steps", "both"),
    ("adam_steps", "both"),
    ("lr", "both"),
    ("blur_size", "both"),
    ("decoder", "both"),
    ("target", "both"),
    ("optimiser", "both"),
    ("region_weight", "both"),
    ("region_mode", "both"),
    ("inversion_cfg", "img2img"),
    ("edit_cfg", "img2img"),
    ("solver", "img2img"),
    ("max_iter", "img2img"),
    ("tol", "img2img"),
    ("attention_injection", "img2img"),
)


def axis_label(field: Field) -> str:
    return LABEL_PREFIX + field.label


def apply_override(name: str) -> Callable[[Any, Any, list], None]:
    """``apply(p, x, xs)``: a new dict each time, because the plot shallow-copies ``p`` per cell."""

    def apply(p, x, xs) -> None:
        setattr(p, OVERRIDES_ATTR, {**(getattr(p, OVERRIDES_ATTR, None) or {}), name: x})

    return apply


def confirm_values(field: Field) -> Callable[[Any, list], None]:
    """``confirm(p, xs)``: reject a bad axis value before the first cell is generated."""

    def confirm(p, xs) -> None:
        for x in xs:
            try:
                check_host_choice(field.name, coerce(field, x))
            except GuidedInputError as error:
                raise GuidedInputError(field.name, f"X/Y/Z plot value: {error.message}") from None

    return confirm


def value_type(field: Field) -> type:
    return {int: int, float: float}.get(field.kind, str)


def build_axes(xyz_module) -> list:
    """One ``AxisOption`` (of the plot module's own classes) per entry of :data:`AXES`."""
    axes = []
    for name, tabs in AXES:
        field = FIELD_BY_NAME[name]
        cls = xyz_module.AxisOptionImg2Img if tabs == "img2img" else xyz_module.AxisOption
        offered = choices_for(field)
        choices = (lambda values=offered: list(values)) if offered else None
        axes.append(
            cls(
                axis_label(field),
                value_type(field),
                apply_override(name),
                confirm=confirm_values(field),
                choices=choices,
            )
        )
    return axes


def register_axes(xyz_module) -> int:
    """Append our axes to the plot's list unless they are there already (the UI can be reloaded)."""
    present = {option.label for option in xyz_module.axis_options}
    new = [axis for axis in build_axes(xyz_module) if axis.label not in present]
    xyz_module.axis_options.extend(new)
    return len(new)


def find_xyz_module(scripts_data) -> Any | None:
    """The loaded ``xyz_grid.py`` module among the WebUI's ``scripts.scripts_data``, if any."""
    for data in scripts_data:
        if data.script_class.__module__ in ("xyz_grid.py", "xy_grid.py") and hasattr(data, "module"):
            return data.module
    return None
