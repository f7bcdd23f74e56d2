"""Choices the WebUI can actually run, where they are fewer than the core's.

The core's ``tiny`` decoder needs a TAESD-like decoder handed to it and ``full-checkpointed`` needs a
diffusers AutoencoderKL to split into stages; the WebUI's checkpoint has neither, so the accordion,
the X/Y/Z axes and the API offer only what works here, and name the rest as unavailable.
"""

from __future__ import annotations

from typing import Any

from lib_guided.errors import GuidedInputError
from lib_guided.params import Field

WEBUI_CHOICES: dict[str, tuple[str, ...]] = {
    "decoder": ("full", "linear", "linear-anchored", "linear-anchored-half", "linear-local")
}


def choices_for(field: Field) -> tuple[str, ...] | None:
    return WEBUI_CHOICES.get(field.name, field.choices)


def check_host_choice(name: str, value: Any) -> None:
    allowed = WEBUI_CHOICES.get(name)
    if allowed is not None and value not in allowed:
        raise GuidedInputError(
            name, f"{value!r} is not available in the WebUI; choose one of {', '.join(allowed)}"
        )


def check_host_choices(params) -> None:
    for name in WEBUI_CHOICES:
        check_host_choice(name, getattr(params, name))
