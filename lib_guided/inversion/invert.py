"""AIDI: accurate DDIM inversion by solving each step's implicit equation.

Sigma space (``x = x0 + sigma * eps``). A DDIM step down from ``sigma_t`` to ``sigma_{t-1}`` is
``x_{t-1} = x_t + (sigma_{t-1} - sigma_t) eps(x_t, sigma_t)``. Inverting it means finding the ``x_t`` that
satisfies ``x_t = F(x_t)`` with ``F(y) = x_{t-1} + (sigma_t - sigma_{t-1}) eps_cfg(y, sigma_t)``, starting
from ``y = x_{t-1}``. Plain DDIM inversion is one evaluation of ``F``; AIDI solves the fixed point, so the
deterministic sampler run back down with the same prompt and CFG lands on the input again: the
reconstruction error of a step is exactly the residual ``F(x_t) - x_t`` of the solved point.

Editing from the inverted noise is in :mod:`lib_guided.inversion.editing` (deterministic, the round
trip) and :mod:`lib_guided.inversion.stochastic_editing` (eta > 0, noise anchored to the trajectory).

Paper: Pan et al., "Effective Real Image Editing with Accelerated Iterative Diffusion Inversion" (ICCV 2023).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise

import torch

from lib_guided.diffusion.guidance import guided_eps
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
from lib_guided.protocol import Cond, DiffusionModel

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
    # relative residual to stop at. 3e-3 since a converged solve returns F(y): on the lab (12 scenes) within
    # 0.03 dB of 5 fixed iterations at 2.77 evaluations per step (10 steps), 1.74 (20 steps); 1e-3 needs
    # 3.73 / 2.40 for no measurable gain (python tests/measure/early_exit.py)
    tol: float = 3e-3
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
            is_real(self.inversion_cfg) and math.isfinite(self.inversion_cfg) and self.inversion_cfg >= 0
        ):
            raise GuidedInputError(
                "inversion_cfg", f"must be a finite number >= 0, got {self.inversion_cfg!r}"
            )
        if not (is_real(self.tol) and 0.0 < self.tol < math.inf):
            raise GuidedInputError("tol", f"must be a finite number > 0, got {self.tol!r}")
        if not (is_real(self.beta) and 0.0 < self.beta <= 1.0):
            raise GuidedInputError("beta", f"must be in (0, 1], got {self.beta!r}")
        if not (is_real(self.reg) and 0.0 <= self.reg < math.inf):
            raise GuidedInputError("reg", f"must be a finite number >= 0, got {self.reg!r}")

    def mixer(self) -> Mixer:
        if self.solver == "aidi-a":
            return AndersonMixer(self.window, self.beta, self.reg)
        if self.solver == "aidi-e":
            return AveragedMixer()
        return PicardMixer()


def is_real(value: object) -> bool:
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
    on_step: Callable[[int, int, int], None] | None = None,
) -> InversionResult:
    """Invert ``latent`` from sigma 0 up to ``sigmas[0]`` (``None``: the full ``settings.steps`` schedule).

    ``sigmas`` is the descending sampling schedule ending at 0, e.g. :func:`inversion_depth_sigmas`.
    Model calls are read from ``model.evals`` per step, so they are exact whatever the solver does.
    ``on_step(k, n, evals)`` reports progress after step k of n (1-based) with the evaluations so far.
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
            if on_step is not None:
                on_step(len(evals), len(ascending) - 1, sum(evals))
    return InversionResult(trajectory, sigmas, sum(evals), evals, residuals, iterations, converged)


def first_guess(
    x_low: torch.Tensor, sigma_low: float, sigma_high: float, previous_eps: torch.Tensor | None = None
) -> torch.Tensor:
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
