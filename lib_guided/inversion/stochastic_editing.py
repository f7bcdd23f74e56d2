"""Stochastic edits (eta > 0) from AIDI's inverted noise, with noise anchored to the inversion trajectory.

The sampler's own ``eta > 0`` adds purely fresh noise. :class:`TrajectoryAnchor` instead mixes the
noise the inversion used on each step into the ancestral noise: where the edit predicts the source's
noise the mean step stays on the trajectory, and at eta = 0 it is exactly the deterministic
:func:`lib_guided.inversion.editing.edit`. :func:`stochastic_edits` samples ``n`` such candidates in
one batch.
"""

from __future__ import annotations

import torch

from lib_guided.diffusion.sampler import StepHook, gaussian_like, sample
from lib_guided.errors import GuidedInputError
from lib_guided.inversion.editing import check_mask, edit
from lib_guided.inversion.invert import InversionResult, is_real
from lib_guided.protocol import Cond, DiffusionModel, cat_conds, repeat_cond


class TrajectoryAnchor(StepHook):
    """Stochastic DDIM whose noise is anchored to the inversion trajectory (runs with the sampler at eta 0).

    The ancestral split writes the step as ``x0 + sigma_down eps + sigma_up xi``. Here
    ``xi = c eps_traj + sqrt(1 - c^2) z`` with ``c = (sigma_next - sigma_down) / sigma_up`` (in [0, 1]),
    ``eps_traj`` the noise the inversion used on this step and ``z`` fresh Gaussian noise. The step is then
    the deterministic step ``- (sigma_next - sigma_down)(eps - eps_traj) + sigma_up sqrt(1 - c^2) z``:
    where the edit predicts the source's noise, the mean step stays on the trajectory, and at eta = 0
    (``sigma_up = 0``) nothing changes. With a ``noise_mask`` the fresh noise goes only where it is 1, so
    candidates differ in the edited region and share the rest of the step.
    """

    def __init__(
        self,
        trajectory_eps: list[torch.Tensor],
        sigmas: list[float],
        eta: float,
        generator: torch.Generator | None,
        first_step: int,
        noise_mask: torch.Tensor | None = None,
    ) -> None:
        self.trajectory_eps, self.sigmas, self.eta = trajectory_eps, sigmas, eta
        self.generator, self.first_step, self.noise_mask = generator, first_step, noise_mask
        self._eps: torch.Tensor | None = None

    def on_denoised(self, step, sigma, x, x0, eps):
        self._eps = eps
        return x0

    def after_step(self, step: int, sigma_next: float, x_next: torch.Tensor) -> torch.Tensor:
        i = step - self.first_step
        sigma = self.sigmas[i]
        sigma_up = _sigma_up(sigma, sigma_next, self.eta)
        if sigma_up <= 0.0:
            return x_next
        sigma_down = (sigma_next**2 - sigma_up**2) ** 0.5
        c = (sigma_next - sigma_down) / sigma_up
        pull = (sigma_next - sigma_down) * (self._eps - self.trajectory_eps[i])
        fresh = sigma_up * max(0.0, 1.0 - c * c) ** 0.5 * gaussian_like(x_next, self.generator)
        if self.noise_mask is not None:
            fresh = fresh * self.noise_mask.to(fresh)
        return x_next - pull + fresh


def _sigma_up(sigma: float, sigma_next: float, eta: float) -> float:
    """The ancestral noise share, as in :func:`lib_guided.diffusion.sampler.ddim_step`
    (0 at eta 0 and at sigma 0)."""
    if eta <= 0.0 or sigma_next <= 0.0:
        return 0.0
    return min(sigma_next, eta * (sigma_next**2 * (sigma**2 - sigma_next**2) / sigma**2) ** 0.5)


def trajectory_eps(inversion: InversionResult) -> list[torch.Tensor]:
    """Per sampling step (descending), the noise the inversion used: ``(x_t - x_{t-1}) / (s_t - s_{t-1})``."""
    ascending = [float(s) for s in inversion.sigmas.flip(0)]
    out = []
    for i in range(len(ascending) - 1):
        delta = ascending[i + 1] - ascending[i]
        out.append((inversion.trajectory[i + 1] - inversion.trajectory[i]) / delta)
    return out[::-1]


def stochastic_edits(
    model: DiffusionModel,
    inversion: InversionResult,
    sigmas: torch.Tensor | None,
    edit_cond: Cond,
    uncond: Cond | None,
    edit_cfg: float,
    n: int,
    eta: float,
    generator: torch.Generator | None,
    mask: torch.Tensor | None = None,
) -> list[torch.Tensor]:
    """``n`` candidate edits with trajectory-anchored noise (see :class:`TrajectoryAnchor`).

    All candidates run as one batch (one model call per step). At ``eta = 0`` every candidate is the
    deterministic :func:`edit` itself, so reconstruction stays exact. ``mask`` is the blended-guidance
    mask and also confines the fresh noise to the edited region.
    """
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        raise GuidedInputError("n", f"must be an integer >= 1, got {n!r}")
    if not (is_real(eta) and 0.0 <= eta <= 1.0):
        raise GuidedInputError("eta", f"must be in [0, 1], got {eta!r}")
    if sigmas is not None and not torch.equal(sigmas.to(inversion.sigmas), inversion.sigmas):
        raise GuidedInputError("sigmas", "stochastic edits follow the inversion's own schedule (pass None)")
    if eta == 0.0:
        with torch.no_grad():
            deterministic = edit(model, inversion, None, edit_cond, uncond, edit_cfg, mask=mask)
        return [deterministic.clone() for _ in range(n)]
    check_mask(mask, inversion.noise_latent)
    anchor = TrajectoryAnchor(
        [e.repeat(n, 1, 1, 1) for e in trajectory_eps(inversion)],
        [float(s) for s in inversion.sigmas],
        eta,
        generator,
        first_step=0,
        noise_mask=_repeat_mask(mask, n),
    )
    with torch.no_grad():
        out = _sample_candidates(model, inversion, edit_cond, uncond, edit_cfg, n, mask, anchor)
    return list(out.chunk(n))


def _sample_candidates(
    model: DiffusionModel,
    inversion: InversionResult,
    edit_cond: Cond,
    uncond: Cond | None,
    edit_cfg: float,
    n: int,
    mask: torch.Tensor | None,
    anchor: TrajectoryAnchor,
) -> torch.Tensor:
    batch = inversion.noise_latent.shape[0]
    return sample(
        model,
        inversion.noise_latent.repeat(n, 1, 1, 1),
        inversion.sigmas,
        _repeat_rows(edit_cond, batch, n),
        None if uncond is None else _repeat_rows(uncond, batch, n),
        edit_cfg,
        mask=_repeat_mask(mask, n),
        hooks=[anchor],
    )


def _repeat_mask(mask: torch.Tensor | None, n: int) -> torch.Tensor | None:
    return mask if mask is None or mask.shape[0] == 1 else mask.repeat(n, 1, 1, 1)


def _repeat_rows(cond: Cond, batch: int, n: int) -> Cond:
    """``cond`` for ``n`` stacked copies of a ``batch``-row latent (candidate-major order)."""
    return cat_conds([repeat_cond(cond, batch)] * n)
