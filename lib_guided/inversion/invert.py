"""AIDI: accurate DDIM inversion by solving each step's implicit equation, then editing from the noise.

Sigma space (``x = x0 + sigma * eps``). A DDIM step down from ``sigma_t`` to ``sigma_{t-1}`` is
``x_{t-1} = x_t + (sigma_{t-1} - sigma_t) eps(x_t, sigma_t)``. Inverting it means finding the ``x_t`` that
satisfies ``x_t = F(x_t)`` with ``F(y) = x_{t-1} + (sigma_t - sigma_{t-1}) eps_cfg(y, sigma_t)``, starting
from ``y = x_{t-1}``. Plain DDIM inversion is one evaluation of ``F``; AIDI solves the fixed point, so the
deterministic sampler run back down with the same prompt and CFG lands on the input again: the
reconstruction error of a step is exactly the residual ``F(x_t) - x_t`` of the solved point.

Paper: Pan et al., "Effective Real Image Editing with Accelerated Iterative Diffusion Inversion" (ICCV 2023).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import torch

from lib_guided.diffusion.guidance import guided_eps
from lib_guided.diffusion.sampler import StepHook, gaussian_like, sample
from lib_guided.diffusion.schedules import ddim_sigmas, start_index_for_strength
from lib_guided.errors import GuidedInputError
from lib_guided.inversion.anderson import (
    AndersonMixer,
    AveragedMixer,
    Mixer,
    PicardMixer,
    SolveResult,
    relative_residual,
    solve,
)
from lib_guided.protocol import Cond, DiffusionModel, cat_conds, repeat_cond

SOLVERS = ("ddim", "fixed-point", "aidi-e", "aidi-a")


@dataclass(frozen=True)
class InversionSettings:
    """How to invert. ``tol`` is the relative residual ``||F(y) - y|| / ||y||`` every row must reach.

    ``inversion_cfg`` is the CFG used while inverting (1.0 = conditional only, one model row per call);
    values well above 1 make the fixed point unstable. ``window``/``beta``/``reg`` only matter for aidi-a.
    """

    solver: str = "aidi-a"
    steps: int = 20
    inversion_cfg: float = 1.0
    tol: float = 1e-3
    max_iter: int = 10
    window: int = 3
    beta: float = 1.0
    reg: float = 1e-4

    def __post_init__(self) -> None:
        if self.solver not in SOLVERS:
            raise GuidedInputError("solver", f"must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        _require_int("steps", self.steps, 1, 1000)
        _require_int("max_iter", self.max_iter, 1, 1000)
        _require_int("window", self.window, 1, 64)
        if not (
            _is_real(self.inversion_cfg) and math.isfinite(self.inversion_cfg) and self.inversion_cfg >= 0
        ):
            raise GuidedInputError(
                "inversion_cfg", f"must be a finite number >= 0, got {self.inversion_cfg!r}"
            )
        if not (_is_real(self.tol) and 0.0 < self.tol < math.inf):
            raise GuidedInputError("tol", f"must be a finite number > 0, got {self.tol!r}")
        if not (_is_real(self.beta) and 0.0 < self.beta <= 1.0):
            raise GuidedInputError("beta", f"must be in (0, 1], got {self.beta!r}")
        if not (_is_real(self.reg) and 0.0 <= self.reg < math.inf):
            raise GuidedInputError("reg", f"must be a finite number >= 0, got {self.reg!r}")

    def mixer(self) -> Mixer:
        if self.solver == "aidi-a":
            return AndersonMixer(self.window, self.beta, self.reg)
        if self.solver == "aidi-e":
            return AveragedMixer()
        return PicardMixer()


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require_int(name: str, value: object, low: int, high: int) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and low <= value <= high):
        raise GuidedInputError(name, f"must be an integer in [{low}, {high}], got {value!r}")


@dataclass(frozen=True)
class InversionResult:
    trajectory: list[torch.Tensor]  # x at each sigma, ascending; trajectory[0] is the input latent
    sigmas: torch.Tensor  # the descending sampling schedule it inverts (ends at 0)
    evals_total: int  # model calls (a batched cond+uncond call counts once)
    evals_per_step: list[int]
    residuals_per_step: list[float]  # best relative residual measured per step; NaN for ddim (unmeasured)
    iterations_per_step: list[int]
    converged_per_step: list[bool]

    @property
    def noise_latent(self) -> torch.Tensor:
        return self.trajectory[-1]


def inversion_depth_sigmas(steps: int, strength: float, sigma_table: torch.Tensor) -> torch.Tensor:
    """The img2img part of ``ddim_sigmas(steps)``: strength 1 inverts to pure noise, 0 not at all."""
    return ddim_sigmas(steps, sigma_table)[start_index_for_strength(steps, strength) :]


def step_map(
    model: DiffusionModel,
    x_low: torch.Tensor,
    sigma_low: float,
    sigma_high: float,
    cond: Cond,
    uncond: Cond | None,
    cfg: float,
):
    """``F(y) = x_low + (sigma_high - sigma_low) eps_cfg(y, sigma_high)``: one model call per evaluation."""
    sigma = torch.tensor(sigma_high)
    delta = sigma_high - sigma_low

    def F(y: torch.Tensor) -> torch.Tensor:
        return x_low + delta * guided_eps(model, y, sigma, cond, uncond, cfg)

    return F


def invert(
    model: DiffusionModel,
    latent: torch.Tensor,
    sigmas: torch.Tensor | None,
    cond: Cond,
    uncond: Cond | None,
    settings: InversionSettings,
) -> InversionResult:
    """Invert ``latent`` from sigma 0 up to ``sigmas[0]`` (``None``: the full ``settings.steps`` schedule).

    ``sigmas`` is the descending sampling schedule ending at 0, e.g. :func:`inversion_depth_sigmas`.
    Model calls are read from ``model.evals`` per step, so they are exact whatever the solver does.
    """
    if sigmas is None:
        sigmas = ddim_sigmas(settings.steps, model.sigma_table)
    _check_schedule(sigmas)
    ascending = [float(s) for s in sigmas.flip(0)]
    trajectory = [latent]
    evals, residuals, iterations, converged = [], [], [], []
    previous_eps = None
    with torch.no_grad():
        for sigma_low, sigma_high in pairwise(ascending):
            F = step_map(model, trajectory[-1], sigma_low, sigma_high, cond, uncond, settings.inversion_cfg)
            before = model.evals
            extrapolate_from = previous_eps if settings.solver != "ddim" else None
            y0 = first_guess(trajectory[-1], sigma_low, sigma_high, extrapolate_from)
            result = _solve_step(F, y0, settings)
            evals.append(model.evals - before)
            previous_eps = (result.y - trajectory[-1]) / (sigma_high - sigma_low)
            trajectory.append(result.y)
            residuals.append(result.best_residual if settings.solver != "ddim" else float("nan"))
            iterations.append(result.iterations)
            converged.append(result.converged)
    return InversionResult(trajectory, sigmas, sum(evals), evals, residuals, iterations, converged)


def first_guess(x_low: torch.Tensor, sigma_low: float, sigma_high: float,
                previous_eps: torch.Tensor | None = None) -> torch.Tensor:
    """Start of the solve of ``x_high = x_low + (s_high - s_low) eps``. With ``previous_eps`` (the noise the
    previous step solved for): that step extrapolated, closer to the fixed point. Otherwise (first step;
    ``ddim`` always): z_{t-1} as it is at level t, i.e. x_low * sqrt((1 + s_high^2) / (1 + s_low^2)), which
    makes ``ddim`` exactly the standard DDIM inversion (x_low itself would reach the UNet shrunk)."""
    if previous_eps is not None:
        return x_low + (sigma_high - sigma_low) * previous_eps
    return x_low * ((1.0 + sigma_high**2) / (1.0 + sigma_low**2)) ** 0.5


def _solve_step(F, y0: torch.Tensor, settings: InversionSettings) -> SolveResult:
    if settings.solver == "ddim":
        # the classic approximation eps(x_t) ~ eps(x_{t-1}): one evaluation, no residual measured
        return SolveResult(F(y0), iterations=1, evals=1)
    return solve(F, y0, settings.mixer(), settings.tol, settings.max_iter)


def _check_schedule(sigmas: torch.Tensor) -> None:
    if sigmas.ndim != 1 or len(sigmas) < 1:
        raise GuidedInputError("sigmas", "must be a 1-D descending schedule ending at 0")
    if float(sigmas[-1]) != 0.0:
        raise GuidedInputError("sigmas", f"must end at 0 (the clean latent), got {float(sigmas[-1])}")
    if len(sigmas) > 1 and not bool((sigmas[:-1] > sigmas[1:]).all()):
        raise GuidedInputError("sigmas", "must be strictly descending")


def step_residuals(
    model: DiffusionModel, inversion: InversionResult, cond: Cond, uncond: Cond | None, cfg: float
) -> list[float]:
    """Re-evaluate ``F`` at every solved point: the worst row's relative residual per step (a check)."""
    ascending = [float(s) for s in inversion.sigmas.flip(0)]
    out = []
    with torch.no_grad():
        for i, (sigma_low, sigma_high) in enumerate(pairwise(ascending)):
            y = inversion.trajectory[i + 1]
            F = step_map(model, inversion.trajectory[i], sigma_low, sigma_high, cond, uncond, cfg)
            out.append(float(relative_residual(F(y) - y, y).max()))
    return out


# -- going back down ------------------------------------------------------------------------------------


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
    _check_mask(mask, inversion.noise_latent)
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


def _check_mask(mask: torch.Tensor | None, latent: torch.Tensor) -> None:
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
    if not (_is_real(eta) and 0.0 <= eta <= 1.0):
        raise GuidedInputError("eta", f"must be in [0, 1], got {eta!r}")
    if sigmas is not None and not torch.equal(sigmas.to(inversion.sigmas), inversion.sigmas):
        raise GuidedInputError("sigmas", "stochastic edits follow the inversion's own schedule (pass None)")
    if eta == 0.0:
        with torch.no_grad():
            deterministic = edit(model, inversion, None, edit_cond, uncond, edit_cfg, mask=mask)
        return [deterministic.clone() for _ in range(n)]
    _check_mask(mask, inversion.noise_latent)
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
