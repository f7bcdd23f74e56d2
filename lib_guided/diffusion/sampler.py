"""A deterministic DDIM sampler in sigma space with hook points, plus img2img (SDEdit) start.

DDIM with eta = 0 is ``x_next = x0 + sigma_next * eps``; eta > 0 moves part of the noise to fresh
Gaussian noise (the ancestral split of k-diffusion), so eta = 0 is exactly the deterministic path.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lib_guided.diffusion.guidance import Scale, guided_eps
from lib_guided.protocol import Cond, DiffusionModel


class StepHook:
    """Extension points of one sampling step; the defaults change nothing."""

    def before_model(self, step: int, sigma: float, x: torch.Tensor) -> None:
        """Called before the model sees ``x`` (e.g. region control learns sigma here)."""

    def on_denoised(
        self, step: int, sigma: float, x: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor
    ) -> torch.Tensor:
        """May replace the x0 prediction; the step then re-noises it with the same ``eps``."""
        return x0

    def after_step(self, step: int, sigma_next: float, x_next: torch.Tensor) -> torch.Tensor:
        """May replace the latent after the step (the GradOP reference optimises here)."""
        return x_next


def gaussian_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Noise drawn on the generator's device, then moved: the same seed gives the same noise anywhere."""
    device = generator.device if generator is not None else x.device
    return torch.randn(x.shape, generator=generator, device=device, dtype=torch.float32).to(x)


def ddim_step(
    x0: torch.Tensor,
    eps: torch.Tensor,
    sigma: float,
    sigma_next: float,
    eta: float | torch.Tensor = 0.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One DDIM step; a tensor ``eta`` ([B, 1, 1, 1]) gives each row its own (rows at 0 deterministic)."""
    deterministic = x0 + sigma_next * eps
    if isinstance(eta, torch.Tensor):
        if sigma_next <= 0.0 or not bool((eta > 0).any()):
            return deterministic
        eta = eta.to(x0)
        share = (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5
        sigma_up = (eta * share).clamp(max=sigma_next)
        sigma_down = (sigma_next**2 - sigma_up**2).sqrt()
        stochastic = x0 + sigma_down * eps + sigma_up * gaussian_like(x0, generator)
        return torch.where(eta > 0, stochastic, deterministic)
    if eta <= 0.0 or sigma_next <= 0.0:
        return deterministic
    sigma_up = min(sigma_next, eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5)
    sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
    return x0 + sigma_down * eps + sigma_up * gaussian_like(x0, generator)


def sample(
    model: DiffusionModel,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    cond: Cond,
    uncond: Cond | None = None,
    scale: Scale = 1.0,
    *,
    mask: torch.Tensor | None = None,
    eta: float | torch.Tensor = 0.0,
    generator: torch.Generator | None = None,
    hooks: Sequence[StepHook] = (),
    first_step: int = 0,
) -> torch.Tensor:
    """Run DDIM from ``sigmas[0]`` down to ``sigmas[-1]`` (usually 0).

    ``first_step`` is the absolute index of ``sigmas[0]`` in the full schedule, so hooks see the same
    step numbers in txt2img and in an img2img run that skips the first steps.
    """
    values = [float(s) for s in sigmas]
    for i, (sigma, sigma_next) in enumerate(zip(values[:-1], values[1:], strict=True)):
        step = first_step + i
        for hook in hooks:
            hook.before_model(step, sigma, x)
        eps = guided_eps(model, x, torch.tensor(sigma), cond, uncond, scale, mask)
        x0 = x - sigma * eps
        for hook in hooks:
            x0 = hook.on_denoised(step, sigma, x, x0, eps)
        x = ddim_step(x0, eps, sigma, sigma_next, eta, generator)
        for hook in hooks:
            x = hook.after_step(step, sigma_next, x)
    return x


def noised_start(
    latent: torch.Tensor, sigma: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """SDEdit / img2img start point: the clean latent plus noise at ``sigma``."""
    return latent + sigma * gaussian_like(latent, generator)
