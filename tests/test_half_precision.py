"""Half precision, the normal case on users' GPUs, proven on the CPU with real small models.

GradOP's gradient phase and AIDI's fixed-point fit must give what float32 gives when the weights are
float16 / bfloat16 and the sampler runs under autocast (the WebUI samples under ``torch.autocast``).
Full CPU autocast at 256² is too slow for a test, so these use half *weights* at small sizes; the GPU
check (tests/gpu/run.sh) runs the same at 512² and 1024².
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch

from lib_guided.gradop.optimise import optimise_latent
from lib_guided.images import psnr
from lib_guided.inversion.editing import reconstruct
from lib_guided.inversion.invert import InversionSettings, invert
from lib_guided.strokes.painting import BlurPainting, stroke_loss

HALF = (torch.float16, torch.bfloat16)


def _target(size: int) -> torch.Tensor:
    target = torch.empty(1, 3, size, size)
    target[..., : size // 2] = torch.tensor([0.85, 0.2, 0.2]).view(1, 3, 1, 1)
    target[..., size // 2 :] = torch.tensor([0.2, 0.3, 0.8]).view(1, 3, 1, 1)
    return target


def _with_vae_in(model, dtype):
    half = copy.copy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # diffusers' note about modules to keep in float32: none here
        half.vae = copy.deepcopy(model.vae).to(dtype)
    return half


def _phase_reduction(model, decode_model, size: int, optimiser: str = "adam", lr: float = 0.1) -> float:
    """One GradOP phase (N = 12) under the sampler's autocast; the loss judged by the float32 decoder."""
    latent = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(0))
    target = _target(size)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # as the WebUI samples
        w, _, _ = optimise_latent(
            latent, target, decode_model.decode, BlurPainting(), 12, lr, optimiser=optimiser
        )
    assert w.dtype == torch.float32 and bool(torch.isfinite(w).all())
    with torch.no_grad():
        before = float(stroke_loss(BlurPainting(), model.decode(latent).clamp(0, 1), target))
        after = float(stroke_loss(BlurPainting(), model.decode(w).clamp(0, 1), target))
    return (before - after) / before


@pytest.mark.parametrize("optimiser, lr", [("adam", 0.1), ("normalised", 0.05)])
@pytest.mark.parametrize("dtype", HALF)
def test_gradop_phase_with_a_half_vae_lowers_the_loss_like_float32(tiny_model, dtype, optimiser, lr):
    full = _phase_reduction(tiny_model, tiny_model, 64, optimiser, lr)
    half = _phase_reduction(tiny_model, _with_vae_in(tiny_model, dtype), 64, optimiser, lr)
    # measured: adam 26.7 % in float32, 26.7 % float16, 26.5 % bfloat16; normalised 27.9 %, 27.9 %, 28.0 %
    assert full > 0.2
    assert abs(half - full) <= 0.1 * full


class _HalfLinearDecoder(torch.nn.Module):
    """A half-precision 1x1 latent -> RGB map upsampled x8: cheap enough to run at 1024² on a CPU."""

    def __init__(self, dtype):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.weight = torch.nn.Parameter((torch.randn(3, 4, 1, 1, generator=gen) * 0.3).to(dtype))
        self.seen: list[torch.Tensor] = []

    def forward(self, latent):
        # sigmoid: inside (0, 1), so no clamp zeroes a gradient
        image = torch.sigmoid(torch.nn.functional.conv2d(latent.to(self.weight.dtype), self.weight))
        image = torch.nn.functional.interpolate(image, scale_factor=8, mode="nearest")
        image.register_hook(lambda g: self.seen.append(g.detach()))
        return image.to(latent.dtype)


@pytest.mark.parametrize("size", [64, 1024])
def test_the_gradient_reaching_a_half_decoder_does_not_underflow_at_any_size(size):
    # A mean over 1024² pixels has per-pixel gradients ~1e-7, under fp16's smallest subnormal (6e-8):
    # the loss is differentiated scaled by the pixel count, so what reaches the decoder is O(0.1).
    decoder = _HalfLinearDecoder(torch.float16)
    latent = torch.randn(1, 4, size // 8, size // 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        w, first, last = optimise_latent(latent, _target(size), decoder, BlurPainting(), 3, 0.05)
    grad = decoder.seen[0]
    assert grad.dtype == torch.float16
    nonzero = grad[grad != 0].abs()
    assert nonzero.numel() > 0.9 * grad.numel()
    assert float(nonzero.float().median()) > 1e-3
    assert last < first and not torch.equal(w, latent)


@pytest.fixture(scope="module")
def lab_model():
    from lib_guided.adapters.diffusers_model import load_model

    return load_model(None)


@pytest.mark.parametrize("dtype", HALF)
def test_aidi_reconstruction_with_a_half_unet_within_half_a_db_of_float32(lab_model, dtype):
    from lib_guided.lab.eval_scenes import stack_images
    from lib_guided.lab.world import make_scene

    scene = make_scene(7)
    image = stack_images([scene])
    settings = InversionSettings(solver="aidi-a", steps=10)
    scores = {}
    for name, model in (("float32", lab_model), ("half", _with_unet_in(lab_model, dtype))):
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=name == "half"):
            cond, uncond = model.encode_prompt([scene.caption]), model.encode_prompt([""])
            result = invert(model, model.encode(image), None, cond, uncond, settings)
            latent = reconstruct(model, result, cond, uncond, settings.inversion_cfg)
            assert latent.dtype == torch.float32 and bool(torch.isfinite(latent).all())
        with torch.no_grad():
            scores[name] = psnr(lab_model.decode(latent).clamp(0, 1), image)
    assert scores["float32"] > 30.0  # measured 33 dB, the VAE's ceiling
    assert abs(scores["half"] - scores["float32"]) <= 0.5


def _with_unet_in(model, dtype):
    half = copy.copy(model)
    half.unet = copy.deepcopy(model.unet).to(dtype)
    return half


def test_lab_folder_is_where_the_loader_finds_it():
    from lib_guided.adapters.diffusers_model import shipped_model_folder

    assert Path(shipped_model_folder(), "unet").is_dir()


@pytest.mark.parametrize("dtype", HALF)
def test_edit_with_injection_and_auto_mask_under_a_half_unet_matches_float32(lab_model, dtype):
    from lib_guided.edit_job import EditSettings, aidi_edit
    from lib_guided.lab.eval_scenes import edit_task, stack_images
    from lib_guided.lab.world import make_scene

    scene = make_scene(7)
    task = edit_task(scene)
    image = stack_images([scene])
    settings = EditSettings(edit_cfg=5.0, blend_mask="auto")
    assert settings.attention_injection > 0
    out = {}
    for name, model in (("float32", lab_model), ("half", _with_unet_in(lab_model, dtype))):
        with torch.no_grad(), torch.autocast("cpu", dtype=dtype, enabled=name == "half"):
            outcome = aidi_edit(
                model,
                model.encode(image),
                task.source_prompt,
                [task.edit_prompt],
                [""],
                InversionSettings(solver="aidi-a", steps=10),
                settings,
                with_reconstruction=True,
            )
        assert outcome.injected and outcome.latents.dtype == torch.float32
        assert bool(torch.isfinite(outcome.latents).all())
        with torch.no_grad():
            out[name] = (lab_model.decode(outcome.latents).clamp(0, 1), outcome.mask)
    (edit32, mask32), (edit16, mask16) = out["float32"], out["half"]
    overlap = float((mask32 * mask16).sum() / ((mask32 + mask16) > 0).float().sum())
    print(f"{dtype}: mask IoU {overlap:.3f}, edit PSNR half vs float32 {psnr(edit16, edit32):.2f} dB")
    assert overlap >= 0.8  # measured 1.0 (float16 and bfloat16)
    assert psnr(edit16, edit32) >= 35.0  # measured 66 dB (float16), 45 dB (bfloat16)


@pytest.mark.parametrize("dtype", HALF)
def test_gradop_with_regional_prompts_under_a_half_unet_matches_float32(lab_model, dtype):
    """The default stroke run (GradOP+ phases, phrases bound in the ``prompts`` region mode) with the UNet
    and text encoder in half precision under autocast: the same objects come out where they were painted."""
    from lib_guided.lab.binding_eval import binding_hits
    from lib_guided.lab.classifier import load_classifier
    from lib_guided.lab.eval_scenes import object_bindings
    from lib_guided.lab.world import SIZE, make_scene
    from lib_guided.pipeline import generate
    from lib_guided.stroke_job import StrokeSettings

    scene = make_scene(7)
    images = {}
    for name, model in (("float32", lab_model), ("half", _with_unet_in(lab_model, dtype))):
        with torch.autocast("cpu", dtype=dtype, enabled=name == "half"):
            result = generate(
                model,
                scene.caption,
                strokes=scene.strokes,
                palette=object_bindings(scene),
                width=SIZE,
                height=SIZE,
                steps=12,
                cfg=5.0,
                seed=3,
                settings=StrokeSettings(region_mode="prompts"),
            )
        assert bool(torch.isfinite(result.images).all())
        images[name] = result.images
    difference = float((images["half"] - images["float32"]).abs().mean())
    assert difference < 0.02  # measured 0.0002 (float16) and 0.0013 (bfloat16) in [0, 1] units
    classifier = load_classifier()
    hits = {name: binding_hits(classifier, image, [scene])["shape"] for name, image in images.items()}
    assert bool(hits["float32"].any()) and torch.equal(hits["half"], hits["float32"])
