"""What the Forge adapter changes, shown without Forge: CI has no Forge (tests/e2e_forge runs the real
one). Forge's behaviour is reproduced where it matters: sampling under ``torch.inference_mode()``,
weights made under it, and the per-row cond marks its sampling function passes to the UNet."""

import sys

import pytest
import torch
from torch import nn

from lib_guided.adapters.forge.host import FORGE
from lib_guided.adapters.forge.model import _trainable_copy
from lib_guided.adapters.forge.rows import ForgeRowTracker
from lib_guided.adapters.hosts import current_host
from lib_guided.adapters.webui.args import canvas_image
from lib_guided.adapters.webui.guided_call import guided_sampler_call
from lib_guided.adapters.webui.host import WEBUI
from lib_guided.regions.attention import RegionControl
from lib_guided.regions.attention_forward import parse_call
from tests.adapters.test_webui_guided_call import StandInSampler, euler, make_call
from tests.adapters.test_webui_guided_call import setup as setup  # noqa: F401 - the shared fixture


def _sample(model, setup, host, gradop):
    steps, sigmas, cond, uncond, x = setup
    sampler = StandInSampler(model)
    step = {"i": 0}
    with guided_sampler_call(sampler, model, gradop, None, False, lambda: step["i"], host=host):
        return euler(sampler.model_wrap_cfg, x.clone(), sigmas, cond, uncond, lambda i: step.update(i=i))


def test_gradop_runs_inside_inference_mode_with_the_forge_host_only(tiny_model, setup):
    steps = setup[0]
    with torch.inference_mode():  # how Forge samples
        plain = _sample(tiny_model, setup, FORGE, None)
        with FORGE.autograd():  # where script_logic builds the phases: their tensors take part in backward
            gradop, other = make_call(tiny_model, steps), make_call(tiny_model, steps)
        guided = _sample(tiny_model, setup, FORGE, gradop)
        with pytest.raises(
            RuntimeError, match="without a gradient"
        ):  # the WebUI host stays in inference mode
            _sample(tiny_model, setup, WEBUI, other)
    assert (guided - plain).abs().max() > 1e-3


def test_a_decoder_made_under_inference_mode_gets_a_trainable_copy():
    with torch.inference_mode():  # Forge's loader builds its weights like this
        decoder = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.SiLU(), nn.Conv2d(8, 3, 1))
    latent = torch.randn(1, 4, 8, 8, requires_grad=True)
    with pytest.raises(RuntimeError, match="Inference tensors"):
        decoder(latent).sum().backward()
    copy = _trainable_copy(decoder)
    assert _trainable_copy(decoder) is copy  # made once per VAE
    copy(latent).square().mean().backward()
    assert latent.grad is not None and latent.grad.abs().sum() > 0
    assert all(p.grad is None for p in copy.parameters())  # weights are never trained


def test_cond_rows_come_from_forges_marks_not_the_row_order():
    control = RegionControl({1: torch.ones(8, 8)}, (8, 8))
    tracker = ForgeRowTracker(control)
    x = torch.zeros(4, 4, 8, 8)
    options = {"cond_mark": torch.tensor([1.0, 1.0, 0.0, 0.0]), "sigmas": torch.tensor([3.5, 3.5])}
    tracker.before_unet(None, (x,), {"transformer_options": options})  # uncond chunk first
    assert control.cond_rows.tolist() == [False, False, True, True]
    assert tracker.sigma == pytest.approx(3.5)
    with pytest.raises(RuntimeError, match="cond marks"):
        tracker.before_unet(None, (x,), {"transformer_options": {}})


def test_forges_attention_call_is_taken_by_the_manual_path():
    x, context = torch.randn(2, 16, 32), torch.randn(2, 77, 64)
    options = {"block": ("input", 1), "block_index": 0, "cond_or_uncond": [0, 1]}
    call = parse_call((x,), {"context": context, "value": None, "transformer_options": options})
    assert call is not None and call.get("context") is context
    # a value tensor (another extension's attn2_patch) cannot be reproduced: left to the module
    assert parse_call((x,), {"context": context, "value": context, "transformer_options": options}) is None


def test_gradio4_image_editor_value_gives_its_composite():
    painted, background = object(), object()
    value = {"background": background, "layers": [painted], "composite": painted}
    assert canvas_image(value) is painted
    assert canvas_image({"image": painted, "mask": None}) is painted


def test_the_host_is_forge_only_with_forges_packages(tmp_path, monkeypatch):
    assert current_host() is WEBUI  # the tests run outside any WebUI
    (tmp_path / "modules_forge").mkdir()
    (tmp_path / "modules_forge" / "__init__.py").write_text("")
    assert current_host() is WEBUI  # importlib caches: nothing on the path yet
    monkeypatch.syspath_prepend(str(tmp_path))
    assert current_host() is WEBUI  # modules_forge without Forge's backend: a fork we do not support
    (tmp_path / "backend" / "diffusion_engine").mkdir(parents=True)
    (tmp_path / "backend" / "__init__.py").write_text("")
    (tmp_path / "backend" / "diffusion_engine" / "__init__.py").write_text("")
    assert current_host() is FORGE
    for name in ("modules_forge", "backend", "backend.diffusion_engine"):
        sys.modules.pop(name, None)
