"""The painting components of both Gradio generations (gradio is imported by the WebUI adapter only)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def sketch_canvas(**kwargs: Any):
    """Gradio 3.41 (A1111): an upload image with the colour-sketch tool."""
    import gradio as gr

    return gr.Image(source="upload", tool="color-sketch", type="pil", image_mode="RGBA", height=384, **kwargs)


def image_editor_canvas(colours: Sequence[str], **kwargs: Any):
    """Gradio 4 (Forge): the image editor, its brush offering ``colours`` first (any other can be picked)."""
    import gradio as gr

    brush = gr.Brush(colors=list(colours), default_color=colours[0], color_mode="defaults")
    return gr.ImageEditor(
        type="pil",
        image_mode="RGBA",
        sources=["upload", "clipboard"],
        brush=brush,
        layers=False,
        height=384,
        **kwargs,
    )
