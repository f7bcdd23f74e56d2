"""Turn "colour -> phrase, weight" bindings into per-token attention masks for region control."""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

from lib_guided.diffusion.sampler import StepHook
from lib_guided.protocol import DiffusionModel
from lib_guided.regions.attention import RegionControl
from lib_guided.strokes.user_palette import BoundRegion


def contains_phrase(prompt: str, phrase: str) -> bool:
    """Whole words, case-insensitive: "cat" is in "a cat, sleeping" but not in "category"."""
    words = r"\s+".join(re.escape(w) for w in phrase.split())
    return bool(words) and re.search(rf"(?<!\w){words}(?!\w)", prompt, re.IGNORECASE) is not None


def prompt_with_phrases(prompt: str, phrases: Sequence[str]) -> str:
    """Append bound phrases the prompt does not already contain, so their tokens exist to attend to."""
    missing = [p for p in phrases if not contains_phrase(prompt, p)]
    parts = [prompt.strip()] + missing if prompt.strip() else missing
    return ", ".join(parts)


def token_masks(
    model: DiffusionModel,
    prompt: str,
    regions: Sequence[BoundRegion],
    masks: dict[str, torch.Tensor],
    region_weight: float,
) -> dict[int, torch.Tensor]:
    """Token index -> region mask times (region weight x binding weight); tokens of all phrases."""
    out: dict[int, torch.Tensor] = {}
    for region in regions:
        scale = region_weight * region.weight
        for position in model.token_positions(prompt, region.phrase):
            mask = masks[region.hex] * scale
            out[position] = torch.maximum(out[position], mask) if position in out else mask
    return out


class RegionControlHook(StepHook):
    """Tells region control the sigma of each model call; cond rows come first in the batch."""

    def __init__(self, control: RegionControl):
        self.control = control

    def before_model(self, step, sigma, x):
        self.control.set_step(sigma, cond_rows=x.shape[0])
