"""Value ranges declared once, on the settings dataclass that owns the value.

A dataclass lists ``BOUNDS = {name: (low, high)}``; its ``__post_init__`` calls :func:`check_bounds`,
and ``params.FIELDS`` reads the same pairs for the UI's sliders and the API's checks.
"""

from __future__ import annotations

import math
from typing import Any

from lib_guided.errors import GuidedInputError


def check_bounds(settings: Any) -> None:
    """Raise naming the first field of ``settings`` that is not a real number in its closed range."""
    for name, (low, high) in type(settings).BOUNDS.items():
        value = getattr(settings, name)
        real = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if not (real and low <= value <= high):
            raise GuidedInputError(name, f"must be in [{low:g}, {high:g}], got {value!r}")
