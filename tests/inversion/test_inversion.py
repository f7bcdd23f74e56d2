"""AIDI inversion and editing on the tiny SD-like model (random weights, [1, 4, 8, 8] latents)."""

from __future__ import annotations

import math

import pytest
import torch

from lib_guided.diffusion.guidance import combine_cfg, guided_eps
from lib_guided.diffusion.schedules import ddim_sigmas
from lib_guided.errors import GuidedInputError
from lib_guided.images import psnr
from lib_guided.inversion.editing import edit, reconstruct
from lib_guided.inversion.invert import InversionSettings, inversion_depth_sigmas, invert, step_residuals
from lib_guided.inversion.stochastic_editing import stochastic_edits, trajectory_eps


@pytest.fixture(scope="module")
def prompts(tiny_model):
    with torch.no_grad():
        return (
            tiny_model.encode_prompt(["a photo of a red barn"]),
            tiny_model.encode_prompt(["a photo of a blue barn"]),
            tiny_model.encode_prompt([""]),
        )


@pytest.fixture(scope="module")
def unit_latent():
    """An SD-like latent (unit std, as real VAE latents times the scaling factor are)."""
    return torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def encoded_latent(tiny_model):
    """The random VAE's latent of a random image: std ~0.07, so the low-sigma steps are barely contractive."""
    with torch.no_grad():
        return tiny_model.encode(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))


@pytest.fixture(scope="module")
def exact_inversion(tiny_model, prompts, unit_latent):
    source, _, uncond = prompts
    settings = InversionSettings(solver="aidi-a", steps=10, tol=1e-5, max_iter=50)
    return invert(tiny_model, unit_latent, None, source, uncond, settings)


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a - b) ** 2).mean())


def test_aidi_finds_the_fixed_point_of_every_step(tiny_model, prompts, exact_inversion):
    source, _, uncond = prompts
    assert all(exact_inversion.converged_per_step)
    assert max(exact_inversion.residuals_per_step) < 1e-5
    # re-applying F at the solved points: the certified iterates really are fixed points
    assert max(step_residuals(tiny_model, exact_inversion, source, uncond, 1.0)) < 1e-5


def test_aidi_reconstructs_far_better_than_ddim_inversion(tiny_model, prompts, unit_latent, exact_inversion):
    source, _, uncond = prompts
    ddim = invert(tiny_model, unit_latent, None, source, uncond, InversionSettings(solver="ddim", steps=10))
    aidi_error = _mse(reconstruct(tiny_model, exact_inversion, source, uncond, 1.0), unit_latent)
    ddim_error = _mse(reconstruct(tiny_model, ddim, source, uncond, 1.0), unit_latent)
    # measured: 1.8e-9 vs 0.87 (the random UNet makes sampling expansive, so DDIM's step errors blow up)
    assert aidi_error < 1e-4 * ddim_error
    assert aidi_error < 1e-7


def test_anderson_needs_fewer_model_calls_than_plain_fixed_point(tiny_model, prompts, encoded_latent):
    source, _, uncond = prompts

    def total_evals(solver: str) -> int:
        settings = InversionSettings(solver=solver, steps=10, tol=1e-4, max_iter=100)
        result = invert(tiny_model, encoded_latent, None, source, uncond, settings)
        assert all(result.converged_per_step)
        return result.evals_total

    # measured: 141 vs 171 (the barely contractive step 0.04 -> 0.35 takes 62 vs 87 of them)
    assert total_evals("aidi-a") < total_evals("fixed-point")


def test_ddim_inversion_is_one_call_per_step(tiny_model, prompts, unit_latent):
    source, _, uncond = prompts
    before = tiny_model.evals
    result = invert(tiny_model, unit_latent, None, source, uncond, InversionSettings(solver="ddim", steps=7))
    assert tiny_model.evals - before == result.evals_total == 7
    assert result.evals_per_step == [1] * 7
    assert all(math.isnan(r) for r in result.residuals_per_step)


@pytest.mark.parametrize("cfg", [1.0, 2.5])
def test_one_model_call_per_evaluation_of_F_even_with_cfg(tiny_model, prompts, unit_latent, cfg):
    source, _, uncond = prompts
    settings = InversionSettings(solver="aidi-e", steps=4, inversion_cfg=cfg, tol=1e-4, max_iter=6)
    before = tiny_model.evals
    result = invert(tiny_model, unit_latent, None, source, uncond, settings)
    assert tiny_model.evals - before == result.evals_total == sum(result.evals_per_step)
    assert result.evals_per_step == result.iterations_per_step
    assert len(result.trajectory) == 5 and torch.equal(result.trajectory[0], unit_latent)


def test_blended_guidance_interpolates_between_conditional_and_full_cfg(tiny_model, prompts, unit_latent):
    source, _, uncond = prompts
    x, sigma = unit_latent * 2.0, torch.tensor(2.0)
    with torch.no_grad():
        eps_cond = tiny_model.eps(x, sigma, source)
        eps_uncond = tiny_model.eps(x, sigma, uncond)
        plain = guided_eps(tiny_model, x, sigma, source, uncond, 6.0)
        all_ones = guided_eps(tiny_model, x, sigma, source, uncond, 6.0, torch.ones(1, 1, 8, 8))
    zeros, ones = torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8)
    torch.testing.assert_close(combine_cfg(eps_cond, eps_uncond, 6.0, zeros), eps_cond)
    torch.testing.assert_close(
        combine_cfg(eps_cond, eps_uncond, 6.0, ones), combine_cfg(eps_cond, eps_uncond, 6.0)
    )
    torch.testing.assert_close(all_ones, plain)


def test_edit_with_an_all_ones_mask_is_plain_cfg(tiny_model, prompts, exact_inversion):
    _, target, uncond = prompts
    with torch.no_grad():
        masked = edit(tiny_model, exact_inversion, None, target, uncond, 5.0, mask=torch.ones(1, 1, 8, 8))
        plain = edit(tiny_model, exact_inversion, None, target, uncond, 5.0)
        half = torch.zeros(1, 1, 8, 8)
        half[..., 4:] = 1.0
        blended = edit(tiny_model, exact_inversion, None, target, uncond, 5.0, mask=half)
    assert torch.allclose(masked, plain, atol=1e-5)
    assert not torch.allclose(blended, plain, atol=1e-3)


def test_stochastic_edits_at_eta_zero_are_the_deterministic_edit(
    tiny_model, prompts, exact_inversion, unit_latent
):
    source, target, uncond = prompts
    with torch.no_grad():
        deterministic = edit(tiny_model, exact_inversion, None, target, uncond, 5.0)
    candidates = stochastic_edits(tiny_model, exact_inversion, None, target, uncond, 5.0, 3, 0.0, None)
    assert len(candidates) == 3 and all(torch.equal(c, deterministic) for c in candidates)
    # and the round trip with the source prompt stays exact
    (round_trip,) = stochastic_edits(tiny_model, exact_inversion, None, source, uncond, 1.0, 1, 0.0, None)
    assert _mse(round_trip, unit_latent) < 1e-7


def test_stochastic_edits_vary_and_are_reproducible(tiny_model, prompts, exact_inversion):
    _, target, uncond = prompts

    def candidates(seed: int) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(seed)
        return stochastic_edits(tiny_model, exact_inversion, None, target, uncond, 5.0, 2, 0.5, generator)

    first, again, other = candidates(1), candidates(1), candidates(2)
    assert not torch.allclose(first[0], first[1], atol=1e-3)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not torch.allclose(first[0], other[0], atol=1e-3)
    assert all(c.shape == (1, 4, 8, 8) and c.isfinite().all() for c in first)


def test_masked_stochastic_edits_only_vary_inside_the_mask(tiny_model, prompts, exact_inversion):
    _, target, uncond = prompts
    generator = torch.Generator().manual_seed(3)
    nowhere = stochastic_edits(
        tiny_model,
        exact_inversion,
        None,
        target,
        uncond,
        5.0,
        2,
        0.5,
        generator,
        mask=torch.zeros(1, 1, 8, 8),
    )
    # no fresh noise anywhere: the candidates coincide (and blended guidance is the conditional prediction)
    torch.testing.assert_close(nowhere[0], nowhere[1])
    half = torch.zeros(1, 1, 8, 8)
    half[..., 4:] = 1.0
    varied = stochastic_edits(
        tiny_model, exact_inversion, None, target, uncond, 5.0, 2, 0.5, generator, mask=half
    )
    assert not torch.allclose(varied[0], varied[1], atol=1e-3)


def test_trajectory_eps_is_the_noise_the_inversion_used(tiny_model, prompts, exact_inversion):
    source, _, uncond = prompts
    sigmas = [float(s) for s in exact_inversion.sigmas]
    top = exact_inversion.noise_latent
    with torch.no_grad():
        eps_top = guided_eps(tiny_model, top, torch.tensor(sigmas[0]), source, uncond, 1.0)
    # at an exact fixed point, the eps implied by the trajectory is the model's eps at x_t
    torch.testing.assert_close(trajectory_eps(exact_inversion)[0], eps_top, atol=1e-3, rtol=1e-3)


def test_inversion_depth_follows_the_denoising_strength(tiny_model, prompts, unit_latent):
    source, _, uncond = prompts
    table = tiny_model.sigma_table
    assert torch.equal(inversion_depth_sigmas(10, 1.0, table), ddim_sigmas(10, table))
    half = inversion_depth_sigmas(10, 0.5, table)
    assert len(half) == 6 and torch.equal(half, ddim_sigmas(10, table)[5:])
    result = invert(tiny_model, unit_latent, half, source, uncond, InversionSettings(solver="ddim"))
    assert len(result.trajectory) == 6 and result.evals_total == 5
    untouched = invert(
        tiny_model, unit_latent, inversion_depth_sigmas(10, 0.0, table), source, uncond, InversionSettings()
    )
    assert untouched.evals_total == 0 and torch.equal(untouched.noise_latent, unit_latent)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("solver", "newton"),
        ("steps", 0),
        ("steps", 2.5),
        ("inversion_cfg", -1.0),
        ("inversion_cfg", float("nan")),
        ("inversion_cfg", float("inf")),
        ("window", 0),
        ("beta", 0.0),
        ("beta", 1.5),
        ("tol", 0.0),
        ("tol", -1e-3),
        ("max_iter", 0),
        ("reg", -1.0),
    ],
)
def test_bad_settings_name_the_field(field, value):
    with pytest.raises(GuidedInputError) as info:
        InversionSettings(**{field: value})
    assert info.value.field == field and str(info.value).startswith(f"{field}: ")


def test_bad_schedules_and_masks_are_rejected(tiny_model, prompts, unit_latent, exact_inversion):
    source, target, uncond = prompts
    with pytest.raises(GuidedInputError, match="sigmas"):
        invert(tiny_model, unit_latent, torch.tensor([2.0, 1.0]), source, uncond, InversionSettings())
    with pytest.raises(GuidedInputError, match="mask"):
        edit(tiny_model, exact_inversion, None, target, uncond, 5.0, mask=torch.ones(1, 1, 4, 4))
    with pytest.raises(GuidedInputError, match="mask"):
        edit(tiny_model, exact_inversion, None, target, uncond, 5.0, mask=torch.full((1, 1, 8, 8), 2.0))
    with pytest.raises(GuidedInputError, match="n"):
        stochastic_edits(tiny_model, exact_inversion, None, target, uncond, 5.0, 0, 0.5, None)


def test_psnr():
    a = torch.zeros(1, 3, 4, 4)
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 0.1) == pytest.approx(20.0)
    assert psnr(a, a + 25.5, max_value=255.0) == pytest.approx(20.0)


def test_ddim_solver_is_the_standard_ddim_inversion_step(tiny_model, prompts, unit_latent):
    """z_t = sqrt(a_t / a_{t-1}) z_{t-1} + (sqrt(1 - a_t) - sqrt(a_t / a_{t-1}) sqrt(1 - a_{t-1})) eps,
    eps = eps(z_{t-1}, t), written in DDPM space, equals our sigma-space step (the UNet sees z_{t-1} as it
    is, at timestep t)."""
    source, _, uncond = prompts
    result = invert(tiny_model, unit_latent, None, source, None, InversionSettings(solver="ddim", steps=10))
    sigmas = [float(s) for s in result.sigmas.flip(0)]
    lo, hi = sigmas[3], sigmas[4]
    a_lo, a_hi = 1 / (1 + lo**2), 1 / (1 + hi**2)
    z_lo = result.trajectory[3] * math.sqrt(a_lo)
    with torch.no_grad():
        eps = tiny_model.eps(z_lo / math.sqrt(a_hi), torch.tensor(hi), source)  # model input: z_lo itself
    ratio = math.sqrt(a_hi / a_lo)
    z_hi = ratio * z_lo + (math.sqrt(1 - a_hi) - ratio * math.sqrt(1 - a_lo)) * eps
    ours = result.trajectory[4] * math.sqrt(a_hi)
    # two float32 formulas for one step: they agree to rounding of values of order 1
    torch.testing.assert_close(ours, z_hi, atol=64 * torch.finfo(torch.float32).eps, rtol=0)
