"""Errors raised for bad user input (paintings, palettes, parameters)."""

from __future__ import annotations


class GuidedInputError(ValueError):
    """Bad user input; ``field`` names the offending parameter, e.g. ``"palette[2].color"``.

    ``str(error)`` is ``"<field>: <message>"`` so UIs and the HTTP API can show it as-is.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")

    def __reduce__(self):
        # Keep the two-argument constructor working across pickling (multiprocessing, caches).
        return (type(self), (self.field, self.message))


def shown(value, limit: int = 40) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters: a user's 10**5000 must neither
    flood the message nor raise (Python refuses to print ints over 4300 digits)."""
    try:
        text = repr(value)
    except ValueError:
        text = f"<{type(value).__name__} too large to print>"
    return text if len(text) <= limit else text[: limit - 3] + "..."
