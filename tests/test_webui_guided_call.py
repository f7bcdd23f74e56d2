"""guided_sampler_call's patches live exactly as long as one sampler call, even when it fails.

The WebUI itself cannot run in CI, so a small stand-in plays its CFG denoiser (the object whose
``forward`` the adapter wraps) around the real tiny SD-like model; the e2e suite covers the real one.
"""

import pytest
import torch
from torch import nn

from lib_guided.attention import RegionControl
from lib_guided.gradop import GradOPSettings
from lib_guided.guidance import guided_eps
from lib_guided.painting import BlurPainting
from lib_guided.schedules import ddim_sigmas
from lib_guided.webui.guided_call import GradOPCall, guided_sampler_call


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
    return GradOPCall(settings, target(), torch.ones(1, 1, 64, 64), BlurPainting(), model.decode, steps)


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
