"""The fixed-point solvers on linear contractions with a known solution (pure math, no model)."""

from __future__ import annotations

import pytest
import torch

from lib_guided.inversion.anderson import (
    AndersonMixer,
    SolveResult,
    anderson_solve,
    averaged_solve,
    fixed_point_solve,
    relative_residual,
)

SIZE = 16
RADIUS = 0.9


def _symmetric_contraction(seed: int, low: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``A`` with eigenvalues spread over [low, 0.9] in a random basis, and a random ``b``."""
    gen = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(SIZE, SIZE, generator=gen, dtype=torch.float64))
    eigenvalues = torch.linspace(low, RADIUS, SIZE, dtype=torch.float64)
    return basis @ torch.diag(eigenvalues) @ basis.T, torch.randn(SIZE, generator=gen, dtype=torch.float64)


class CountedLinearMap:
    """``F(y) = A y + b`` per batch row, counting its calls."""

    def __init__(self) -> None:
        # two different problems in one batch: one with a positive spectrum, one with an oscillating part
        (a0, b0), (a1, b1) = _symmetric_contraction(1, 0.0), _symmetric_contraction(2, -RADIUS)
        self.A, self.b = torch.stack([a0, a1]), torch.stack([b0, b1])
        self.calls = 0

    def __call__(self, y: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.einsum("bij,bj->bi", self.A, y) + self.b

    def solution(self) -> torch.Tensor:
        return torch.linalg.solve(torch.eye(SIZE, dtype=torch.float64) - self.A, self.b)


SOLVERS = {
    "fixed-point": lambda F, y0, tol, cap: fixed_point_solve(F, y0, tol, cap),
    "aidi-e": lambda F, y0, tol, cap: averaged_solve(F, y0, tol, cap),
    "aidi-a": lambda F, y0, tol, cap: anderson_solve(F, y0, tol=tol, max_iter=cap),
}


def _run(name: str, tol: float = 1e-10, cap: int = 1000) -> tuple[SolveResult, CountedLinearMap]:
    F = CountedLinearMap()
    return SOLVERS[name](F, F.b.clone(), tol, cap), F


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_every_solver_reaches_the_exact_fixed_point(name):
    result, F = _run(name)
    assert result.converged
    torch.testing.assert_close(result.y, F.solution(), atol=1e-7, rtol=0)
    assert float(relative_residual(F(result.y) - result.y, result.y).max()) < 1e-9


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_evaluations_are_counted_exactly(name):
    result, F = _run(name, tol=1e-6)
    assert result.evals == result.iterations == F.calls == len(result.residuals)
    assert result.residuals[-1] < 1e-6 <= min(result.residuals[:-1])


def test_anderson_needs_at_most_half_the_iterations_of_plain_fixed_point():
    anderson, _ = _run("aidi-a", tol=1e-6)
    plain, _ = _run("fixed-point", tol=1e-6)
    # measured: 44 vs 109 iterations (AIDI-E needs 163: averaging slows the positive eigenvalues)
    assert anderson.iterations <= plain.iterations // 2


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_the_iteration_cap_is_respected(name):
    result, F = _run(name, tol=1e-14, cap=7)
    assert not result.converged
    assert result.iterations == result.evals == F.calls == 7
    assert result.y.isfinite().all()


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_a_point_already_fixed_takes_one_evaluation(name):
    F = CountedLinearMap()
    result = SOLVERS[name](F, F.solution(), 1e-8, 50)
    assert result.converged and result.evals == F.calls == 1
    assert torch.allclose(result.y, F.solution(), atol=1e-6)  # F(y): the solution up to rounding


def test_tikhonov_term_keeps_collinear_residuals_finite():
    # F(y) = y + c: every residual is the same vector c, so the Gram matrix is rank one
    shift = torch.tensor([[1.0, -2.0, 0.5], [0.0, 3.0, 1.0]])
    result = anderson_solve(lambda y: y + shift, torch.zeros(2, 3), tol=1e-6, max_iter=6)
    assert not result.converged and result.y.isfinite().all()


def test_exactly_converged_rows_give_finite_weights():
    # a zero residual makes the Gram matrix zero; the scale-free regulariser still solves it
    mixer = AndersonMixer(m=3)
    y = torch.ones(1, 4)
    for _ in range(3):
        assert mixer.propose(y, y, torch.zeros_like(y)).isfinite().all()


def test_a_diverging_map_returns_the_lowest_residual_iterate():
    # F(y) = 3 y + 1 expands away from its fixed point -1/2: fall back to the best point seen
    y0 = torch.full((1, 2), -0.4)
    result = fixed_point_solve(lambda y: 3 * y + 1, y0, tol=1e-12, max_iter=5)
    assert result.residuals[0] == min(result.residuals)
    assert torch.equal(result.y, y0)


def test_anderson_with_damping_still_converges():
    F = CountedLinearMap()
    result = anderson_solve(F, F.b.clone(), m=5, beta=0.5, tol=1e-10, max_iter=1000)
    assert result.converged
    torch.testing.assert_close(result.y, F.solution(), atol=1e-7, rtol=0)


def test_bad_solver_arguments_are_rejected():
    F = CountedLinearMap()
    with pytest.raises(ValueError, match="tol"):
        fixed_point_solve(F, F.b, tol=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        averaged_solve(F, F.b, max_iter=0)
    with pytest.raises(ValueError, match="beta"):
        anderson_solve(F, F.b, beta=1.5)


@pytest.mark.parametrize("name", sorted(SOLVERS))
def test_a_converged_solve_returns_the_map_of_its_last_iterate(name):
    # F(y) costs nothing more once the residual was measured, and a contraction moves it closer
    F = CountedLinearMap()
    iterate = F.solution() + 1e-4
    result = SOLVERS[name](F, iterate, 1e-2, 5)
    assert result.converged and result.evals == F.calls == 1
    assert torch.equal(result.y, F(iterate))
    assert (result.y - F.solution()).norm() < (iterate - F.solution()).norm()
