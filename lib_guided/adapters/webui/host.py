"""What differs between the hosts the script runs in: AUTOMATIC1111's WebUI here, Forge in adapters/forge.

The script layer (script_logic, guided_call, ui) is one for both: Forge keeps A1111's ``modules``
(processing, the samplers and their CFG denoiser, scripts, the API). What Forge changes underneath (its
model objects, sampling under ``torch.inference_mode()``, how a UNet call marks its conditional rows,
attention patches in the UNet patcher, Gradio 4) is behind the methods of a host object.
"""

from __future__ import annotations

import contextlib
from typing import Any

from lib_guided.adapters.webui.canvases import sketch_canvas
from lib_guided.adapters.webui.model import WebUIModel
from lib_guided.adapters.webui.rows import CondRowTracker


class WebUIHost:
    """AUTOMATIC1111's WebUI v1.10 (ldm / sgm models, Gradio 3)."""

    name = "AUTOMATIC1111"

    def model(self, sd_model) -> WebUIModel:
        return WebUIModel(sd_model)

    def autograd(self) -> contextlib.AbstractContextManager:
        """Where GradOP builds its decoder and takes its gradients: the WebUI samples under no_grad only,
        which ``torch.enable_grad()`` inside the core lifts."""
        return contextlib.nullcontext()

    def row_tracker(self, control) -> CondRowTracker:
        return CondRowTracker(control)

    def foreign_attention(self, model) -> list[str]:
        """Cross-attention modules another extension has replaced (an instance-level forward)."""
        return [name for name, module in model.attention_modules() if "forward" in module.__dict__]

    def own_sampling(self, p, x) -> contextlib.AbstractContextManager:
        """Around the UNet calls we make ourselves (the AIDI edit): the WebUI's model is ready as it is."""
        return contextlib.nullcontext()

    def strokes_component(self, **kwargs: Any):
        return sketch_canvas(**kwargs)


WEBUI = WebUIHost()
