"""Editing from AIDI's inverted noise: the deterministic sampler run back down from the noise latent.

With the edit prompt and CFG this is the edit; with the inversion's own prompt and CFG it is the round
trip, which lands on the input again up to the inversion's per-step residuals (see
:mod:`lib_guided.inversion.invert`). An optional mask gives AIDI's blended guidance: full CFG inside
the edited region, the plain conditional prediction outside.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from lib_guided.diffusion.sampler import StepHook, sample
from lib_guided.errors import GuidedInputError
from lib_guided.inversion.invert import InversionResult
from lib_guided.protocol import Cond, DiffusionModel


def edit(
    model: DiffusionModel,
    inversion: InversionResult,
    sigmas: torch.Tensor | None,
    edit_cond: Cond,
    uncond: Cond | None,
    edit_cfg: float,
    *,
    mask: torch.Tensor | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    hooks: Sequence[StepHook] = (),
    first_step: int = 0,
) -> torch.Tensor:
    """Sample down from the inverted noise with the edit prompt and CFG (``sigmas=None``: the inversion's).

    ``mask`` ([B or 1, 1, h, w] in [0, 1] at latent resolution) is AIDI's blended guidance: full CFG inside,
    the plain conditional prediction outside. ``eta > 0`` is the sampler's fresh-noise stochastic DDIM.
    ``first_step`` is the absolute index of ``sigmas[0]`` in the full schedule (for hooks).
    """
    sigmas = _edit_schedule(inversion, sigmas)
    check_mask(mask, inversion.noise_latent)
    return sample(
        model,
        inversion.noise_latent,
        sigmas,
        edit_cond,
        uncond,
        edit_cfg,
        mask=mask,
        eta=eta,
        generator=generator,
        hooks=hooks,
        first_step=first_step,
    )


def reconstruct(
    model: DiffusionModel, inversion: InversionResult, cond: Cond, uncond: Cond | None, cfg: float
) -> torch.Tensor:
    """The deterministic round trip: sample down with the inversion's own prompt and CFG."""
    with torch.no_grad():
        return edit(model, inversion, None, cond, uncond, cfg)


def _edit_schedule(inversion: InversionResult, sigmas: torch.Tensor | None) -> torch.Tensor:
    if sigmas is None:
        return inversion.sigmas
    if not math.isclose(float(sigmas[0]), float(inversion.sigmas[0]), rel_tol=1e-6):
        raise GuidedInputError(
            "sigmas", f"must start at the inverted noise level {float(inversion.sigmas[0]):.4g}"
        )
    return sigmas


def check_mask(mask: torch.Tensor | None, latent: torch.Tensor) -> None:
    """Reject a mask that is not [B or 1, 1, h, w] in [0, 1] at ``latent``'s resolution (None passes)."""
    if mask is None:
        return
    batch, _, height, width = latent.shape
    if mask.ndim != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, batch):
        raise GuidedInputError("mask", f"must have shape [{batch} or 1, 1, {height}, {width}]")
    if tuple(mask.shape[2:]) != (height, width):
        raise GuidedInputError(
            "mask", f"must be at latent resolution {height}x{width}, got {tuple(mask.shape[2:])}"
        )
    if not bool(((mask >= 0) & (mask <= 1)).all()):
        raise GuidedInputError("mask", "values must be in [0, 1]")
