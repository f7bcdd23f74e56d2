import pytest
import torch

from lib_guided.diffusion import schedules as S


@pytest.fixture
def table():
    return S.sigmas_from_alphas_cumprod(S.scaled_linear_alphas_cumprod())


def test_sd_schedule_endpoints_match_known_values(table):
    # SD 1.x: sigma_min ~ 0.0292, sigma_max ~ 14.6146 (the values k-diffusion prints for SD)
    assert table[0].item() == pytest.approx(0.0292, abs=1e-4)
    assert table[-1].item() == pytest.approx(14.6146, abs=1e-3)
    assert torch.all(table[1:] > table[:-1])


def test_alphas_sigma_round_trip(table):
    ac = S.scaled_linear_alphas_cumprod()
    assert torch.allclose(S.alphas_cumprod_from_sigmas(table), ac, rtol=0, atol=1e-12)


def test_timestep_sigma_round_trip(table):
    t = torch.tensor([0.0, 1.0, 10.5, 500.25, 998.9, 999.0], dtype=torch.float64)
    assert torch.allclose(S.sigma_to_timestep(S.timestep_to_sigma(t, table), table), t, atol=1e-6)
    ints = torch.arange(0, 1000, 37)
    assert torch.allclose(S.sigma_to_timestep(table[ints], table), ints.double(), atol=1e-9)


def test_sigma_to_timestep_clamps_outside_table(table):
    t = S.sigma_to_timestep(torch.tensor([1e-6, 1e6], dtype=torch.float64), table)
    assert t.tolist() == [0.0, 999.0]


def test_ddim_timesteps_match_diffusers_leading_spacing():
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1)
    for steps in (10, 20, 50):
        sched.set_timesteps(steps)
        assert S.ddim_timesteps(steps).tolist() == sched.timesteps.tolist()


def test_ddim_sigmas_descend_to_zero(table):
    sig = S.ddim_sigmas(10, table)
    assert len(sig) == 11 and sig[-1] == 0 and torch.all(sig[:-1] > sig[1:])


def test_start_index_for_strength():
    assert S.start_index_for_strength(50, 0.8) == 10
    assert S.start_index_for_strength(50, 1.0) == 0
    assert S.start_index_for_strength(50, 0.0) == 50
    with pytest.raises(ValueError, match="strength"):
        S.start_index_for_strength(50, 1.5)


def test_parameterisation_identities():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(3, 4, 5, 5, generator=g, dtype=torch.float64)
    eps = torch.randn(3, 4, 5, 5, generator=g, dtype=torch.float64)
    sigma = torch.tensor([0.1, 1.0, 14.6], dtype=torch.float64)
    x = x0 + sigma.view(-1, 1, 1, 1) * eps
    assert torch.allclose(S.eps_to_x0(x, eps, sigma), x0)
    assert torch.allclose(S.x0_to_eps(x, x0, sigma), eps)
    # DDPM latent z = sqrt(abar) x0 + sqrt(1 - abar) eps is the model input
    abar = S.alphas_cumprod_from_sigmas(sigma).view(-1, 1, 1, 1)
    z = abar.sqrt() * x0 + (1 - abar).sqrt() * eps
    assert torch.allclose(S.model_input_scale(x, sigma), z)
    v = abar.sqrt() * eps - (1 - abar).sqrt() * x0
    assert torch.allclose(S.eps_to_v(z, eps, sigma), v)
    assert torch.allclose(S.v_to_eps(z, v, sigma), eps)
    assert torch.allclose(S.v_to_x0(z, v, sigma), x0)
