"""guided_sampler_call's patches live exactly as long as one sampler call, even when it fails.

The WebUI itself cannot run in CI, so a small stand-in plays its CFG denoiser (the object whose
``forward`` the adapter wraps) around the real tiny SD-like model; the e2e suite covers the real one.
"""

import pytest
import torch
from torch import nn

from lib_guided.adapters.webui.guided_call import denoiser_step, guided_sampler_call
from lib_guided.diffusion.guidance import guided_eps
from lib_guided.diffusion.schedules import ddim_sigmas
from lib_guided.gradop.optimise import GradOPPlus, GradOPSettings
from lib_guided.regions.attention import RegionControl
from lib_guided.strokes.painting import BlurPainting


class StandInCFGDenoiser(nn.Module):
    """Like the WebUI's CFGDenoiser for k-diffusion samplers: x, sigma in; the guided x0 out."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, sigma, cond=None, uncond=None, cond_scale=5.0):
        return x - sigma.view(-1, 1, 1, 1) * guided_eps(self.model, x, sigma[0], cond, uncond, cond_scale)


class StandInSampler:
    def __init__(self, model):
        self.model_wrap_cfg = StandInCFGDenoiser(model)


def euler(denoiser, x, sigmas, cond, uncond, on_step):
    for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:], strict=True)):
        on_step(i)
        denoised = denoiser(x, torch.full((x.shape[0],), float(s)), cond=cond, uncond=uncond)
        x = x + (x - denoised) / float(s) * float(s_next - s)
    return x


def target():
    t = torch.empty(1, 3, 64, 64)
    t[..., :32] = torch.tensor([0.85, 0.2, 0.2]).view(1, 3, 1, 1)
    t[..., 32:] = torch.tensor([0.2, 0.3, 0.8]).view(1, 3, 1, 1)
    return t


def nothing_patched(sampler, model) -> bool:
    no_forward = "forward" not in sampler.model_wrap_cfg.__dict__
    no_hooks = not model.unet._forward_pre_hooks and not model.unet._forward_pre_hooks_with_kwargs
    no_attention = all("forward" not in m.__dict__ for _, m in model.attention_modules())
    return no_forward and no_hooks and no_attention


@pytest.fixture
def setup(tiny_model):
    steps = 8
    sigmas = ddim_sigmas(steps, tiny_model.sigma_table)
    cond, uncond = tiny_model.encode_prompt(["a red barn"]), tiny_model.encode_prompt([""])
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * float(sigmas[0])
    return steps, sigmas, cond, uncond, x


def make_call(model, steps):
    settings = GradOPSettings(strength=0.8, adam_steps=6)
    return GradOPPlus(settings, target(), model.decode, BlurPainting(), steps, torch.ones(1, 1, 64, 64))


@torch.no_grad()
def test_gradop_acts_inside_the_call_and_nothing_stays_patched(tiny_model, setup):
    steps, sigmas, cond, uncond, x = setup
    sampler = StandInSampler(tiny_model)
    plain = euler(sampler.model_wrap_cfg, x.clone(), sigmas, cond, uncond, lambda i: None)
    gradop = make_call(tiny_model, steps)
    control = RegionControl({3: torch.ones(8, 8)}, (8, 8))
    step = {"i": 0}
    with guided_sampler_call(sampler, tiny_model, gradop, control, False, lambda: step["i"]):
        guided = euler(sampler.model_wrap_cfg, x.clone(), sigmas, cond, uncond, lambda i: step.update(i=i))
    assert [s for s, _, _ in gradop.history] == [2, 3, 4]  # 8 - int(8 * 0.8) = 2
    assert not torch.equal(plain, guided)
    assert nothing_patched(sampler, tiny_model)
    again = euler(sampler.model_wrap_cfg, x.clone(), sigmas, cond, uncond, lambda i: None)
    assert torch.equal(again, plain)


@torch.no_grad()
def test_an_exception_mid_run_restores_everything(tiny_model, setup):
    steps, sigmas, cond, uncond, x = setup
    sampler = StandInSampler(tiny_model)
    plain = euler(sampler.model_wrap_cfg, x.clone(), sigmas, cond, uncond, lambda i: None)

    def fail_at_step_two(i):
        if i == 2:
            raise RuntimeError("out of memory (simulated)")

    control = RegionControl({3: torch.ones(8, 8)}, (8, 8))
    with (
        pytest.raises(RuntimeError, match="simulated"),
        guided_sampler_call(sampler, tiny_model, make_call(tiny_model, steps), control, False, lambda: 0),
    ):
        euler(sampler.model_wrap_cfg, x.clone(), sigmas, cond, uncond, fail_at_step_two)
    assert nothing_patched(sampler, tiny_model)
    assert torch.equal(euler(sampler.model_wrap_cfg, x.clone(), sigmas, cond, uncond, lambda i: None), plain)


class CountingDenoiser(StandInCFGDenoiser):
    """The WebUI's call bookkeeping: ``step`` counts calls (incremented at the end of forward), ``steps``
    and ``total_steps`` are set by launch_sampling (twice the steps for second-order samplers)."""

    def __init__(self, model, steps, calls_per_step=1):
        super().__init__(model)
        self.step, self.steps, self.total_steps = 0, steps, steps * calls_per_step

    def forward(self, *args, **kwargs):
        out = super().forward(*args, **kwargs)
        self.step += 1
        return out


@pytest.mark.parametrize("calls_per_step", [1, 2])
@torch.no_grad()
def test_phases_run_on_their_own_step_from_the_denoisers_call_count(tiny_model, setup, calls_per_step):
    steps, sigmas, cond, uncond, x = setup
    sampler = StandInSampler(tiny_model)
    sampler.model_wrap_cfg = CountingDenoiser(tiny_model, steps, calls_per_step)
    seen = []

    def sample_step(denoiser, x, s, s_next, i):
        for _ in range(calls_per_step):  # a second-order sampler evaluates twice per step
            seen.append((i, denoiser_step(sampler.model_wrap_cfg)))
            denoised = denoiser(x, torch.full((1,), float(s)), cond=cond, uncond=uncond)
        return x + (x - denoised) / float(s) * float(s_next - s)

    gradop = make_call(tiny_model, steps)
    with guided_sampler_call(
        sampler, tiny_model, gradop, None, False, lambda: denoiser_step(sampler.model_wrap_cfg)
    ):
        for i, (s, s_next) in enumerate(zip(sigmas[:-1], sigmas[1:], strict=True)):
            x = sample_step(sampler.model_wrap_cfg, x, s, s_next, i)
    assert all(i == step for i, step in seen)
    assert [s for s, _, _ in gradop.history] == [2, 3, 4]


@torch.no_grad()
def test_another_extensions_denoiser_forward_is_chained_not_skipped(tiny_model, setup):
    steps, sigmas, cond, uncond, x = setup
    sampler = StandInSampler(tiny_model)
    denoiser = sampler.model_wrap_cfg
    calls = []
    theirs = denoiser.forward  # e.g. an extension that wraps the CFG denoiser per instance

    def their_forward(*args, **kwargs):
        calls.append(1)
        return theirs(*args, **kwargs)

    denoiser.forward = their_forward
    with guided_sampler_call(sampler, tiny_model, make_call(tiny_model, steps), None, False, lambda: 0):
        euler(sampler.model_wrap_cfg, x.clone(), sigmas, cond, uncond, lambda i: None)
    assert len(calls) == steps
    assert denoiser.__dict__["forward"] is their_forward  # theirs again afterwards


@torch.no_grad()
def test_interrupt_ends_a_phase_within_one_adam_step_and_progress_is_reported(tiny_model, setup):
    steps, sigmas, cond, uncond, x = setup
    gradop = make_call(tiny_model, steps)
    reports = []
    gradop.progress = lambda *report: reports.append(report[:4])
    gradop.stop = lambda: len(reports) >= 2  # Interrupt pressed during the second Adam step
    sampler = StandInSampler(tiny_model)
    with guided_sampler_call(sampler, tiny_model, gradop, None, False, lambda: 2):
        euler(sampler.model_wrap_cfg, x.clone(), sigmas, cond, uncond, lambda i: None)
    assert reports == [(1, 3, 1, 6), (1, 3, 2, 6)]  # phase 1 of 3: Adam steps 1 and 2 of 6, then stopped


@torch.no_grad()
def test_region_control_refuses_to_bypass_another_extensions_attention(tiny_model, setup):
    steps, sigmas, cond, uncond, x = setup
    sampler = StandInSampler(tiny_model)
    _, module = tiny_model.attention_modules()[0]
    theirs = module.forward  # e.g. Regional Prompter's attention mode sets attn2.forward per instance
    module.forward = theirs
    try:
        control = RegionControl({3: torch.ones(8, 8)}, (8, 8))
        with (
            pytest.raises(RuntimeError, match="region control cannot run while another extension replaces"),
            guided_sampler_call(sampler, tiny_model, make_call(tiny_model, steps), control, False, lambda: 0),
        ):
            pass
        assert module.__dict__["forward"] is theirs and "forward" not in sampler.model_wrap_cfg.__dict__
        # stroke guidance alone composes with it
        with guided_sampler_call(sampler, tiny_model, make_call(tiny_model, steps), None, False, lambda: 2):
            euler(sampler.model_wrap_cfg, x.clone(), sigmas, cond, uncond, lambda i: None)
    finally:
        del module.forward


@torch.no_grad()
def test_a_tiled_unet_call_gets_a_clear_message(tiny_model, setup):
    steps, sigmas, cond, uncond, x = setup
    sampler = StandInSampler(tiny_model)
    control = RegionControl({3: torch.ones(8, 8)}, (8, 8))
    tile = x[..., :4, :4].clone()  # what Tiled Diffusion hands the UNet
    with (
        pytest.raises(RuntimeError, match="needs the whole 8x8 latent in each UNet call, got a 4x4 tile"),
        guided_sampler_call(sampler, tiny_model, make_call(tiny_model, steps), control, False, lambda: 0),
    ):
        sampler.model_wrap_cfg(tile, torch.full((1,), float(sigmas[0])), cond=cond, uncond=uncond)
    assert nothing_patched(sampler, tiny_model)
