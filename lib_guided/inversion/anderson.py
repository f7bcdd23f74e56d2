"""Batched fixed-point solvers for ``y = F(y)``: plain iteration, AIDI-E averaging, Anderson (AIDI-A).

Every solver works on tensors ``[B, ...]`` whose rows are independent problems and shares one loop:

* one call of ``F`` per iteration (``evals == iterations``);
* the residual of an iterate is ``||F(y) - y|| / ||y||`` per row (relative, so it means the same at
  sigma 0.03 and at sigma 14); the loop stops as soon as every row is below ``tol``;
* the only host sync per iteration is the scalar ``max`` of the row residuals (the early-exit test);
* if the cap ``max_iter`` is reached, each row gets the solver's next proposal when its residual was
  still falling, otherwise the lowest-residual iterate it saw (a diverging step never makes things worse).

A converged result returns the certified iterate ``y`` (its own residual is below ``tol``), not ``F(y)``.
The mixing rules live in small "mixer" objects so a benchmark can time the bookkeeping alone: the cost of
a solve minus the time spent inside ``F``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

Map = Callable[[torch.Tensor], torch.Tensor]

# The denominator floor of the relative residual: a zero iterate falls back to the absolute residual.
_NORM_FLOOR = 1e-12


@dataclass
class SolveResult:
    y: torch.Tensor
    iterations: int
    evals: int  # calls of F
    residuals: list[float] = field(default_factory=list)  # worst row's relative residual, per iterate
    converged: bool = False

    @property
    def best_residual(self) -> float:
        """Lowest worst-row residual measured (NaN when nothing was measured)."""
        finite = [r for r in self.residuals if r == r]
        return min(finite) if finite else float("nan")


def relative_residual(r: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``||r|| / ||y||`` per row, in float32 at least (fp16 norms overflow)."""
    dtype = torch.promote_types(r.dtype, torch.float32)
    r_norm = torch.linalg.vector_norm(r.reshape(r.shape[0], -1), dim=1, dtype=dtype)
    y_norm = torch.linalg.vector_norm(y.reshape(y.shape[0], -1), dim=1, dtype=dtype)
    return r_norm / y_norm.clamp_min(_NORM_FLOOR)


class Mixer(Protocol):
    def propose(self, y: torch.Tensor, g: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """Next iterate from the current one, ``g = F(y)`` and ``r = g - y``."""


class PicardMixer:
    """Plain fixed-point iteration: ``y <- F(y)``."""

    def propose(self, y: torch.Tensor, g: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        return g


class AveragedMixer:
    """AIDI-E: ``y_{n+1} = (F(y_n) + F(y_{n-1})) / 2`` (the first step is plain)."""

    def __init__(self) -> None:
        self._previous: torch.Tensor | None = None

    def propose(self, y: torch.Tensor, g: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        proposal = g if self._previous is None else 0.5 * (g + self._previous)
        self._previous = g
        return proposal


def gram_dtype(device: torch.device) -> torch.dtype:
    """float64 for the small least-squares systems, except where the device has none (Apple MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


class AndersonMixer:
    """Type-II Anderson acceleration with window ``m``, mixing ``beta`` and a relative Tikhonov term.

    Weights per row: ``a = argmin ||sum_i a_i r_i||`` with ``sum_i a_i = 1``, i.e. ``a = z / sum(z)`` for
    ``(H / s + reg I) z = 1`` where ``H`` is the Gram matrix of the window's residuals and ``s`` its mean
    diagonal (so ``reg`` is scale-free and a zero or collinear window gives finite weights).
    Then ``y <- sum_i a_i (F(y_i) - (1 - beta) r_i)``, i.e. ``sum_i a_i ((1-beta) y_i + beta F(y_i))``.
    The Gram matrix is updated one row per iteration (``O(m N)``), and ring buffers avoid re-stacking.
    """

    def __init__(self, m: int = 3, beta: float = 1.0, reg: float = 1e-4) -> None:
        if m < 1:
            raise ValueError(f"m: must be >= 1, got {m}")
        if not 0.0 < beta <= 1.0:
            raise ValueError(f"beta: must be in (0, 1], got {beta}")
        if not reg >= 0.0:
            raise ValueError(f"reg: must be >= 0, got {reg}")
        self.m, self.beta, self.reg = m, beta, reg
        self._count = 0
        self._g: torch.Tensor | None = None  # [B, m, N], the iterate's dtype
        self._r: torch.Tensor | None = None  # [B, m, N], gram dtype
        self._gram: torch.Tensor | None = None  # [B, m, m]

    def propose(self, y: torch.Tensor, g: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        # outside the sampler's autocast: it would run the mixing einsum in half precision
        with torch.autocast(y.device.type, enabled=False):
            return self._propose(y, g, r)

    def _propose(self, y: torch.Tensor, g: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        batch = y.shape[0]
        g_flat, r_flat = g.reshape(batch, -1), r.reshape(batch, -1)
        if self._g is None:
            self._allocate(g_flat)
        slot = self._count % self.m
        self._count += 1
        self._g[:, slot] = g_flat
        self._r[:, slot] = r_flat
        size = min(self._count, self.m)  # the filled slots are always 0..size-1
        self._update_gram(slot, size)
        weights = self._weights(size)  # [B, size]
        proposal = torch.einsum("bk,bkn->bn", weights.to(g_flat.dtype), self._g[:, :size])
        if self.beta < 1.0:
            correction = torch.einsum("bk,bkn->bn", weights, self._r[:, :size])
            proposal = proposal - (1.0 - self.beta) * correction.to(proposal.dtype)
        return proposal.reshape(g.shape)

    def _allocate(self, g_flat: torch.Tensor) -> None:
        batch, n = g_flat.shape
        dtype = gram_dtype(g_flat.device)
        self._g = g_flat.new_zeros(batch, self.m, n)
        self._r = torch.zeros(batch, self.m, n, dtype=dtype, device=g_flat.device)
        self._gram = torch.zeros(batch, self.m, self.m, dtype=dtype, device=g_flat.device)

    def _update_gram(self, slot: int, size: int) -> None:
        # only the new residual's row and column change
        dots = torch.bmm(self._r[:, :size], self._r[:, slot].unsqueeze(2)).squeeze(2)  # [B, size]
        self._gram[:, slot, :size] = dots
        self._gram[:, :size, slot] = dots

    def _weights(self, size: int) -> torch.Tensor:
        gram = self._gram[:, :size, :size]
        scale = torch.diagonal(gram, dim1=1, dim2=2).mean(dim=1).clamp_min(torch.finfo(gram.dtype).tiny)
        eye = torch.eye(size, dtype=gram.dtype, device=gram.device)
        system = gram / scale[:, None, None] + self.reg * eye
        ones = torch.ones(gram.shape[0], size, 1, dtype=gram.dtype, device=gram.device)
        # solve_ex: no error check, hence no device sync; a failed row falls back to a plain step
        z = torch.linalg.solve_ex(system, ones).result.squeeze(2)
        weights = z / z.sum(dim=1, keepdim=True)
        latest = torch.zeros_like(weights)
        latest[:, (self._count - 1) % self.m] = 1.0
        return torch.where(weights.isfinite().all(dim=1, keepdim=True), weights, latest)


class _BestIterate:
    """Per-row lowest-residual iterate seen so far (the fallback when a solve diverges)."""

    def __init__(self, y0: torch.Tensor) -> None:
        self.y = y0
        self.residual = torch.full((y0.shape[0],), float("inf"), device=y0.device)
        self.last_was_best = torch.ones(y0.shape[0], dtype=torch.bool, device=y0.device)

    def update(self, y: torch.Tensor, residual: torch.Tensor) -> None:
        # NaN compares False, so a NaN iterate is never kept
        self.last_was_best = residual <= self.residual.to(residual)
        self.residual = torch.where(self.last_was_best, residual, self.residual.to(residual))
        self.y = torch.where(_rows(self.last_was_best, y), y, self.y)

    def choose(self, proposal: torch.Tensor) -> torch.Tensor:
        """The proposal for rows still improving, the best iterate for rows that got worse."""
        return torch.where(_rows(self.last_was_best, proposal), proposal, self.y)


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape(-1, *([1] * (like.ndim - 1)))


def solve(F: Map, y0: torch.Tensor, mixer: Mixer, tol: float, max_iter: int) -> SolveResult:
    """The shared loop: evaluate, measure, stop (returning the last ``F(y)``) or ask ``mixer`` for the next
    iterate. The residuals are those of the iterates ``y``; a converged result is ``F`` of the last one."""
    if not tol > 0.0:
        raise ValueError(f"tol: must be > 0, got {tol}")
    if max_iter < 1:
        raise ValueError(f"max_iter: must be >= 1, got {max_iter}")
    best = _BestIterate(y0)
    residuals: list[float] = []
    y = y0
    for iteration in range(1, max_iter + 1):
        g = F(y)
        r = g - y
        row_residual = relative_residual(r, y)
        residuals.append(float(row_residual.max()))  # the one host sync per iteration
        if residuals[-1] < tol:
            # F(y) is already paid for and, F being a contraction here, one step closer than y
            return SolveResult(g, iteration, iteration, residuals, converged=True)
        best.update(y, row_residual)
        y = mixer.propose(y, g, r)
    return SolveResult(best.choose(y), max_iter, max_iter, residuals, converged=False)


def fixed_point_solve(F: Map, y0: torch.Tensor, tol: float = 1e-4, max_iter: int = 10) -> SolveResult:
    return solve(F, y0, PicardMixer(), tol, max_iter)


def averaged_solve(F: Map, y0: torch.Tensor, tol: float = 1e-4, max_iter: int = 10) -> SolveResult:
    """AIDI-E, the paper's empirical two-point acceleration."""
    return solve(F, y0, AveragedMixer(), tol, max_iter)


def anderson_solve(
    F: Map,
    y0: torch.Tensor,
    *,
    m: int = 3,
    beta: float = 1.0,
    tol: float = 1e-4,
    max_iter: int = 10,
    reg: float = 1e-4,
) -> SolveResult:
    """AIDI-A: Anderson acceleration (see :class:`AndersonMixer`)."""
    return solve(F, y0, AndersonMixer(m, beta, reg), tol, max_iter)
