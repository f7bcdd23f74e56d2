"""End-to-end runs on any DiffusionModel: stroke-guided generation and AIDI real-image editing."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from lib_guided.diffusion.sampler import gaussian_like, noised_start, sample
from lib_guided.diffusion.schedules import ddim_sigmas, start_index_for_strength
from lib_guided.errors import GuidedInputError
from lib_guided.gradop.decoders.factory import make_gradient_decoder
from lib_guided.gradop.optimise import GradOPPlus, GradOPSettings, gradop_relaxed
from lib_guided.inversion.edit_mask import attention_edit_mask
from lib_guided.inversion.invert import InversionSettings, edit, invert
from lib_guided.protocol import DiffusionModel
from lib_guided.regions.attention import RegionControl, controlled_attention
from lib_guided.regions.binding import RegionControlHook, prompt_with_phrases, token_masks
from lib_guided.strokes.io import load_strokes, painting_pixel_cap
from lib_guided.strokes.painting import make_painting
from lib_guided.strokes.palette import colour_masks, extract_palette
from lib_guided.strokes.resize import resize_strokes
from lib_guided.strokes.user_palette import resolve_palette

METHODS = ("gradop+", "gradop", "sdedit", "text")


@dataclass
class GenerateResult:
    images: torch.Tensor  # [B, 3, H, W] in [0, 1]
    latents: torch.Tensor
    prompt: str  # the prompt actually encoded (bound phrases appended)
    model_evals: int
    loss_history: list[tuple[int, float, float]] = field(default_factory=list)


def _check_size(model: DiffusionModel, width: int, height: int) -> tuple[int, int]:
    f = model.vae_scale_factor
    for name, value in (("width", width), ("height", height)):
        if value < f or value % f:
            raise GuidedInputError(name, f"must be a positive multiple of {f}, got {value}")
    return height // f, width // f


def _latent_channels(model: DiffusionModel) -> int:
    return int(getattr(model, "latent_channels", 4))


def _device(model: DiffusionModel) -> torch.device:
    """Where the model's inputs belong (noise is still drawn on the CPU generator: same seed, same noise)."""
    return torch.device(getattr(model, "device", "cpu"))


@torch.no_grad()
def generate(
    model: DiffusionModel,
    prompt: str,
    *,
    strokes: Any = None,
    palette: Sequence[Any] = (),
    method: str = "gradop+",
    negative_prompt: str = "",
    width: int = 512,
    height: int = 512,
    steps: int = 50,
    cfg: float = 7.5,
    seed: int = 0,
    batch_size: int = 1,
    gradop: GradOPSettings | None = None,
    painting: str = "blur",
    region_weight: float = 1.0,
    colour_tolerance: float = 24.0,
    gamma: float = 1e-3,
    relaxed_steps: int = 50,
    gradient_decoder: str = "linear-anchored",
    decoder=None,
) -> GenerateResult:
    """Text + strokes -> image. ``method``: gradop+ (one pass), gradop (relaxed, ~1.8 passes),
    sdedit (img2img on the strokes, the baseline) or text (strokes ignored except for regions).

    ``gradient_decoder`` names the decoder the gradient goes through (full, full-checkpointed, linear,
    tiny; see :mod:`lib_guided.gradop.decoders.factory`); ``decoder`` overrides it with any
    differentiable callable.
    """
    if method not in METHODS:
        raise GuidedInputError("method", f"must be one of {', '.join(METHODS)}, got {method!r}")
    gradop = gradop or GradOPSettings()
    h, w = _check_size(model, width, height)
    generator = torch.Generator().manual_seed(int(seed))
    sigmas = ddim_sigmas(steps, model.sigma_table)

    cap = painting_pixel_cap(width, height)
    painting_strokes = load_strokes(strokes, max_pixels=cap) if strokes is not None else None
    regions = []
    if painting_strokes is not None:
        found = extract_palette(painting_strokes, tolerance=colour_tolerance)
        regions = resolve_palette(palette, found, colour_tolerance)
    elif palette:
        raise GuidedInputError("palette", "phrases are bound to stroke colours, but no strokes were given")
    full_prompt = prompt_with_phrases(prompt, [r.phrase for r in regions])
    cond = model.encode_prompt([full_prompt])
    uncond = model.encode_prompt([negative_prompt])

    hooks = []
    attention = contextlib.nullcontext()
    if regions and region_weight > 0:
        masks = colour_masks(painting_strokes, found, size=(h, w))
        control = RegionControl(token_masks(model, full_prompt, regions, masks, region_weight), (h, w))
        attention = controlled_attention(model.attention_modules(), control)
        hooks.append(RegionControlHook(control))

    evals_before = model.evals
    shape = (batch_size, _latent_channels(model), h, w)
    noise = gaussian_like(torch.empty(shape, device=_device(model)), generator)
    history: list[tuple[int, float, float]] = []
    with attention:
        if painting_strokes is None or method == "text":
            latents = sample(model, noise * float(sigmas[0]), sigmas, cond, uncond, cfg, hooks=hooks)
        else:
            target, painted = resize_strokes(painting_strokes, width, height)
            if painting == "blur":
                paint_fn = make_painting("blur")
            else:
                paint_fn = make_painting(painting, palette=[c.rgb for c in found])
            decode = decoder or make_gradient_decoder(gradient_decoder, model, fit_latent_size=(h, w))
            if method == "sdedit":
                start = start_index_for_strength(steps, gradop.strength)
                init = model.encode(target.to(_device(model)).expand(batch_size, -1, -1, -1))
                x = noised_start(init, float(sigmas[start]), generator)
                latents = sample(model, x, sigmas[start:], cond, uncond, cfg, hooks=hooks, first_step=start)
            elif method == "gradop+":
                hook = GradOPPlus(gradop, target, decode, paint_fn, steps, painted, generator)
                latents = sample(
                    model, noise * float(sigmas[0]), sigmas, cond, uncond, cfg, hooks=[*hooks, hook]
                )
                history = hook.history
            else:
                latents, first, last = gradop_relaxed(
                    model, noise, sigmas, cond, uncond, cfg, target, decode, paint_fn,
                    strength=gradop.strength, opt_steps=relaxed_steps, lr=gradop.lr, gamma=gamma,
                    weight_mask=painted, generator=generator, hooks=tuple(hooks),
                )
                history = [(-1, first, last)]
    images = model.decode(latents).clamp(0, 1)
    return GenerateResult(images, latents, full_prompt, model.evals - evals_before, history)


@dataclass
class EditResult:
    image: torch.Tensor  # [1, 3, H, W] in [0, 1]
    reconstruction: torch.Tensor | None
    inversion_evals: int
    edit_evals: int
    evals_per_step: list[int]


@torch.no_grad()
def edit_image(
    model: DiffusionModel,
    image: torch.Tensor,
    source_prompt: str,
    edit_prompt: str,
    *,
    inversion: InversionSettings | None = None,
    edit_cfg: float = 7.5,
    strength: float = 1.0,
    negative_prompt: str = "",
    mask: torch.Tensor | str | None = None,
    eta: float = 0.0,
    seed: int = 0,
    with_reconstruction: bool = False,
) -> EditResult:
    """Invert ``image`` ([1,3,H,W] in [0,1]) with the source prompt, then sample back with the edit
    prompt and edit CFG. ``mask`` (latent or image resolution, or "auto" for the cross-attention map of
    the changed words) turns on blended guidance: full edit CFG inside, conditional prediction outside."""
    settings = inversion or InversionSettings()
    h, w = _check_size(model, image.shape[-1], image.shape[-2])
    if not 0.0 < strength <= 1.0:
        raise GuidedInputError("strength", f"must be in (0, 1], got {strength}")
    if not (edit_cfg >= 0.0 and edit_cfg == edit_cfg and edit_cfg < 100):
        raise GuidedInputError("edit_cfg", f"must be in [0, 100), got {edit_cfg}")
    sigmas = ddim_sigmas(settings.steps, model.sigma_table)
    start = start_index_for_strength(settings.steps, strength)
    sigmas = sigmas[start:]
    source = model.encode_prompt([source_prompt])
    target = model.encode_prompt([edit_prompt])
    uncond = model.encode_prompt([negative_prompt])
    latent = model.encode(image.to(_device(model)))
    before = model.evals
    inverted = invert(model, latent, sigmas, source, uncond, settings)
    after_inversion = model.evals
    if isinstance(mask, str):
        if mask != "auto":
            raise GuidedInputError("mask", f"must be an image, None or 'auto', got {mask!r}")
        ascending = [float(s) for s in reversed(sigmas)]
        blend = attention_edit_mask(model, inverted.trajectory, ascending, source_prompt, edit_prompt)
    elif mask is not None:
        blend = torch.nn.functional.interpolate(
            mask.reshape(1, 1, *mask.shape[-2:]).float(), size=(h, w), mode="area"
        ).to(latent.device)
    else:
        blend = None
    generator = torch.Generator().manual_seed(int(seed))
    edited = edit(model, inverted, sigmas, target, uncond, edit_cfg, mask=blend, eta=eta, generator=generator)
    edit_evals = model.evals - after_inversion
    recon = None
    if with_reconstruction:
        recon_latent = edit(model, inverted, sigmas, source, uncond, settings.inversion_cfg)
        recon = model.decode(recon_latent).clamp(0, 1)
    return EditResult(
        model.decode(edited).clamp(0, 1), recon, after_inversion - before, edit_evals, inverted.evals_per_step
    )
