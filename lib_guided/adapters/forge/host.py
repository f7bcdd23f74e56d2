"""Forge as a host of the script layer (see :mod:`lib_guided.adapters.webui.host` for what differs)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

from lib_guided.adapters.forge.model import ForgeModel
from lib_guided.adapters.forge.rows import ForgeRowTracker
from lib_guided.adapters.webui.canvases import image_editor_canvas
from lib_guided.adapters.webui.host import WebUIHost

# the colours the painting brush offers first (any other can be picked)
BRUSH_COLOURS = ("#ff0000", "#00a000", "#0000ff", "#ffff00", "#ffffff", "#000000", "#87ceeb", "#8b4513")


class ForgeHost(WebUIHost):
    """lllyasviel's Forge (``backend``: UnetPatcher, KModel, sampling under inference mode, Gradio 4)."""

    name = "Forge"

    def model(self, sd_model) -> ForgeModel:
        return ForgeModel(sd_model)

    def autograd(self) -> contextlib.AbstractContextManager:
        # Forge samples under torch.inference_mode(): no gradient can be taken inside it, and tensors made
        # there cannot be saved for backward, so GradOP builds its decoder and optimises outside it
        return torch.inference_mode(False)

    def row_tracker(self, control) -> ForgeRowTracker:
        return ForgeRowTracker(control)

    def foreign_attention(self, model: ForgeModel) -> list[str]:
        """Instance-level forwards as in the WebUI, and Forge's own attn2 patches: a replacement runs
        instead of the module, a patch rewrites its inputs first."""
        foreign = super().foreign_attention(model)
        options = model.patcher.model_options.get("transformer_options", {})
        replaced = options.get("patches_replace", {}).get("attn2", {})
        foreign += [f"Forge attn2 replacement at {key}" for key in replaced]
        if options.get("patches", {}).get("attn2_patch"):
            foreign.append("Forge attn2_patch")
        return foreign

    @contextlib.contextmanager
    def own_sampling(self, p, x) -> Iterator[None]:
        """What Forge's samplers do around sampling: load the UNet with its patches (LoRA weights, other
        extensions' options) onto the device, and clean up after."""
        from backend.sampling.sampling_function import sampling_cleanup, sampling_prepare

        unet = p.sd_model.forge_objects.unet
        sampling_prepare(unet, x)
        try:
            yield
        finally:
            sampling_cleanup(unet)

    def strokes_component(self, **kwargs: Any):
        return image_editor_canvas(BRUSH_COLOURS, **kwargs)


FORGE = ForgeHost()
