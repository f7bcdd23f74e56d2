"""Stroke guidance, assembled once for every host: the user's painting and palette in, GradOP+ phases
and region control for one sampling call out.

``pipeline.generate`` (the CLI, the lab, the bench) and the WebUI adapter both build their runs here;
the hosts only supply the decoder (the WebUI caches its fitted one per checkpoint) and install the
result in their own sampler.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from lib_guided.bounds import check_bounds
from lib_guided.errors import GuidedInputError
from lib_guided.gradop.decoders.factory import DECODERS
from lib_guided.gradop.optimise import GradOPPlus, GradOPSettings
from lib_guided.protocol import Decoder, DiffusionModel, cond_context
from lib_guided.regions.attention import REGION_MODES, RegionControl
from lib_guided.regions.binding import prompt_with_phrases, token_masks
from lib_guided.strokes.io import StrokeImage, load_strokes, painting_pixel_cap
from lib_guided.strokes.painting import REFERENCE_KERNEL_SIZE, BlurPainting, make_painting
from lib_guided.strokes.palette import colour_masks, extract_palette
from lib_guided.strokes.resize import resize_strokes
from lib_guided.strokes.user_palette import BoundRegion, resolve_palette

PAINTINGS = ("blur", "median-quantize")


@dataclass(frozen=True)
class StrokeSettings:
    """How the strokes are read and compared; GradOP+'s own knobs are :class:`GradOPSettings`."""

    painting: str = "blur"  # the painting function f of the loss
    blur_size: int = REFERENCE_KERNEL_SIZE  # blur kernel at 512 px, scaled with the image
    # what the stroke gradient goes through; the bench and the lab chose it (README, Measured figures)
    decoder: str = "linear-anchored-half"
    region_weight: float = 1.0  # phrase <-> colour binding strength; 0 = off
    colour_tolerance: float = 24.0  # RGB distance within which a pixel belongs to a palette colour
    # how a phrase is tied to its region (regions.attention.REGION_MODES); the lab chose it (README)
    region_mode: str = "prompts"

    BOUNDS: ClassVar[dict[str, tuple[float, float]]] = {
        "blur_size": (3, 101),
        "region_weight": (0.0, 10.0),
        "colour_tolerance": (1.0, 128.0),
    }

    def __post_init__(self) -> None:
        if self.painting not in PAINTINGS:
            choices = ", ".join(PAINTINGS)
            raise GuidedInputError("painting", f"must be one of {choices}, got {self.painting!r}")
        if self.region_mode not in REGION_MODES:
            choices = ", ".join(REGION_MODES)
            raise GuidedInputError("region_mode", f"must be one of {choices}, got {self.region_mode!r}")
        if self.decoder not in DECODERS:
            raise GuidedInputError("decoder", f"must be one of {', '.join(DECODERS)}, got {self.decoder!r}")
        check_bounds(self)
        if not (isinstance(self.blur_size, int) and self.blur_size % 2):
            raise GuidedInputError(
                "blur_size", f"must be an odd integer (a kernel size), got {self.blur_size!r}"
            )


@dataclass
class StrokeJob:
    """A validated painting with its palette bound to phrases; nothing sampled yet."""

    strokes: StrokeImage
    found: list  # the painting's palette colours
    regions: list[BoundRegion]
    settings: StrokeSettings = field(default_factory=StrokeSettings)
    gradop: GradOPSettings = field(default_factory=GradOPSettings)

    @classmethod
    def prepare(
        cls,
        strokes: Any,
        palette: Sequence[Any],
        width: int,
        height: int,
        settings: StrokeSettings | None = None,
        gradop: GradOPSettings | None = None,
        largest_output: tuple[int, int] | None = None,
    ) -> StrokeJob:
        """Decode and check everything a run needs, before any sampling. ``largest_output`` (width,
        height) sets the painting's size cap when a later pass (hires fix) is bigger than the first."""
        settings = settings or StrokeSettings()
        cap = painting_pixel_cap(*(largest_output or (width, height)))
        image = load_strokes(strokes, max_pixels=cap)
        found = extract_palette(image, tolerance=settings.colour_tolerance)
        regions = resolve_palette(palette, found, settings.colour_tolerance)
        resize_strokes(image, width, height)  # aspect-ratio check before sampling
        return cls(image, found, regions, settings, gradop or GradOPSettings())

    @property
    def phrases(self) -> list[str]:
        return [r.phrase for r in self.regions]

    @property
    def binds_phrases(self) -> bool:
        return bool(self.regions) and self.settings.region_weight > 0

    def prompt(self, prompt: str) -> str:
        """The prompt with every bound phrase it lacks appended (a phrase must be in the prompt to bind)."""
        return prompt_with_phrases(prompt, self.phrases)

    def painting(self):
        """The painting function f; the median-quantize one snaps to this painting's own palette."""
        if self.settings.painting == "blur":
            return BlurPainting(size_at_512=self.settings.blur_size)
        return make_painting(self.settings.painting, palette=[c.rgb for c in self.found])

    def phases(
        self, decode: Decoder, width: int, height: int, steps: int, generator: torch.Generator | None = None
    ) -> GradOPPlus:
        """GradOP+ for one sampling call of ``steps`` steps at ``width`` x ``height``."""
        target, painted = resize_strokes(self.strokes, width, height)
        return GradOPPlus(self.gradop, target, decode, self.painting(), steps, painted, generator)

    def region_control(
        self, model: DiffusionModel, prompt: str, latent_size: tuple[int, int]
    ) -> RegionControl | None:
        """Cross-attention control for the prompt as encoded (phrases appended); None when off."""
        if not self.binds_phrases:
            return None
        masks = colour_masks(self.strokes, self.found, size=latent_size)
        weight = self.settings.region_weight
        if self.settings.region_mode == "prompts":
            contexts = [
                (
                    masks[region.hex] * (weight * region.weight),
                    cond_context(model.encode_prompt([region.phrase])),
                )
                for region in self.regions
            ]
            return RegionControl({}, latent_size, "prompts", contexts)
        bound = token_masks(model, prompt, self.regions, masks, weight)
        return RegionControl(bound, latent_size, self.settings.region_mode) if bound else None
