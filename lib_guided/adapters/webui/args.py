"""Turn what the UI or the API sent into validated GuidedParams (positional list or one named dict)."""

from __future__ import annotations

from typing import Any

from lib_guided.errors import GuidedInputError, shown
from lib_guided.params import FIELDS, GuidedParams


def palette_rows(value: Any) -> list:
    """The UI's palette table (rows of [color, phrase, weight]) without its empty rows."""
    if value is None:
        return []
    if hasattr(value, "values") and hasattr(value, "columns"):  # a pandas DataFrame
        value = value.values.tolist()
    if isinstance(value, dict) and "data" in value:
        value = value["data"]
    if isinstance(value, str):
        return value  # the infotext form; GuidedParams parses it
    if not isinstance(value, (list, tuple)):
        raise GuidedInputError("palette", f"expected a list of colour bindings, got {shown(value)}")
    rows = []
    for i, row in enumerate(value):
        if isinstance(row, dict):
            rows.append(row)
        elif isinstance(row, (list, tuple)) and 1 <= len(row) <= 3:
            if len(row) > 1 and str(row[1] or "").strip():
                # a colour without a phrase is simply not bound (the palette button lists every colour)
                weight = row[2] if len(row) > 2 and str(row[2]).strip() != "" else 1.0
                rows.append({"color": row[0], "phrase": row[1], "weight": weight})
        else:
            raise GuidedInputError(
                f"palette[{i}]",
                f"expected {{'color', 'phrase', 'weight'}} or [color, phrase, weight], got {shown(row)}",
            )
    return rows


def canvas_image(value: Any) -> Any:
    """Keep the painting of a canvas value: Gradio 3's sketch hands over ``{"image", "mask"}``, Gradio 4's
    ImageEditor (Forge) ``{"background", "layers", "composite"}``, where the composite is what was painted."""
    if isinstance(value, dict) and "image" in value:
        return value["image"]
    if isinstance(value, dict) and "composite" in value:
        return value["composite"]
    return value


def parse_script_args(args: tuple, overrides: dict[str, Any] | None = None) -> GuidedParams:
    """``args`` is the UI's positional list, or (API) a single dict of named parameters first."""
    if args and isinstance(args[0], dict):
        values = dict(args[0])
    else:
        values = {f.name: v for f, v in zip(FIELDS, args, strict=False)}
    if "palette" in values:
        values["palette"] = palette_rows(values["palette"])
    if "strokes" in values:
        values["strokes"] = canvas_image(values["strokes"])
    values.update(overrides or {})
    return GuidedParams.from_dict(values)
