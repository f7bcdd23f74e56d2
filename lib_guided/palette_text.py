"""The palette's text form (``#d03030=red barn:1.0; #3050c0=lake``): the infotext, the CLI's ``--palette``
and the UI's paste all read it here; the API's list of dicts is normalised to the same shape."""

from __future__ import annotations

from typing import Any

from lib_guided.errors import GuidedInputError


def parse_palette(value: Any) -> tuple:
    """A palette from a list of dicts, or from its infotext form ``#d03030=red barn:1.0; ...``."""
    if isinstance(value, str):
        value = [
            parse_palette_item(part, i) for i, part in enumerate(p for p in value.split(";") if p.strip())
        ]
    if not isinstance(value, (list, tuple)):
        raise GuidedInputError("palette", f"expected a list of colour bindings, got {type(value).__name__}")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            out.append({"weight": 1.0, **item})  # one canonical form, so params compare equal
        elif isinstance(item, (list, tuple)) and len(item) in (2, 3):
            out.append({"color": item[0], "phrase": item[1], "weight": item[2] if len(item) == 3 else 1.0})
        else:
            raise GuidedInputError(
                f"palette[{i}]", f"expected a dict with color, phrase, weight; got {item!r}"
            )
    return tuple(out)


def parse_palette_item(text: str, index: int) -> dict:
    colour, sep, rest = text.strip().partition("=")
    if not sep:
        raise GuidedInputError(f"palette[{index}]", f"expected COLOR=PHRASE[:WEIGHT], got {text.strip()!r}")
    phrase, weight = rest, "1"
    if ":" in rest:
        phrase, _, weight = rest.rpartition(":")
    try:
        value = float(weight)
    except ValueError:
        raise GuidedInputError(f"palette[{index}].weight", f"not a number: {weight!r}") from None
    return {"color": colour.strip(), "phrase": phrase.strip(), "weight": value}


def format_palette(palette: tuple) -> str:
    """Infotext form, parsed back by :func:`parse_palette`; ``;`` and ``=`` are separators."""
    parts = []
    for item in palette:
        phrase = str(item.get("phrase", "")).replace(";", ",").replace("=", " ")
        parts.append(f"{item.get('color')}={phrase}:{float(item.get('weight', 1.0)):g}")
    return "; ".join(parts)
