"""End-to-end runs on any DiffusionModel: stroke-guided generation and AIDI real-image editing."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from lib_guided.diffusion.sampler import gaussian_like, noised_start, sample
from lib_guided.diffusion.schedules import ddim_sigmas, start_index_for_strength
from lib_guided.edit_job import EditSettings, aidi_edit
from lib_guided.errors import GuidedInputError
from lib_guided.gradop.decoders.factory import make_gradient_decoder
from lib_guided.gradop.optimise import GradOPSettings, gradop_relaxed
from lib_guided.images import mask_at_image_size
from lib_guided.inversion.invert import InversionSettings
from lib_guided.protocol import DiffusionModel
from lib_guided.regions.attention import controlled_attention
from lib_guided.regions.binding import RegionControlHook
from lib_guided.stroke_job import StrokeJob, StrokeSettings
from lib_guided.strokes.resize import resize_strokes

METHODS = ("gradop+", "gradop", "sdedit", "text")
DEFAULT_STEPS = 50  # the CLI's; in the WebUI the job's own steps and CFG apply
DEFAULT_CFG = 7.5


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
    steps: int = DEFAULT_STEPS,
    cfg: float = DEFAULT_CFG,
    seed: int = 0,
    batch_size: int = 1,
    gradop: GradOPSettings | None = None,
    settings: StrokeSettings | None = None,
    gamma: float = 1e-3,
    relaxed_steps: int = 50,
    decoder=None,
) -> GenerateResult:
    """Text + strokes -> image. ``method``: gradop+ (one pass), gradop (relaxed, ~1.8 passes),
    sdedit (img2img on the strokes, the baseline) or text (strokes ignored except for regions).

    ``settings.decoder`` names the decoder the gradient goes through (see
    :mod:`lib_guided.gradop.decoders.factory`); ``decoder`` overrides it with any differentiable callable.
    """
    if method not in METHODS:
        raise GuidedInputError("method", f"must be one of {', '.join(METHODS)}, got {method!r}")
    gradop = gradop or GradOPSettings()
    settings = settings or StrokeSettings()
    h, w = _check_size(model, width, height)
    generator = torch.Generator().manual_seed(int(seed))
    sigmas = ddim_sigmas(steps, model.sigma_table)

    job = None
    if strokes is not None:
        job = StrokeJob.prepare(strokes, palette, width, height, settings, gradop)
    elif palette:
        raise GuidedInputError("palette", "phrases are bound to stroke colours, but no strokes were given")
    full_prompt = job.prompt(prompt) if job is not None else prompt
    cond = model.encode_prompt([full_prompt])
    uncond = model.encode_prompt([negative_prompt])

    hooks = []
    attention = contextlib.nullcontext()
    control = job.region_control(model, full_prompt, (h, w)) if job is not None else None
    if control is not None:
        attention = controlled_attention(model.attention_modules(), control)
        hooks.append(RegionControlHook(control))

    evals_before = model.evals
    shape = (batch_size, _latent_channels(model), h, w)
    noise = gaussian_like(torch.empty(shape, device=_device(model)), generator)
    history: list[tuple[int, float, float]] = []
    with attention:
        if job is None or method == "text":
            latents = sample(model, noise * float(sigmas[0]), sigmas, cond, uncond, cfg, hooks=hooks)
        elif method == "sdedit":
            target, _ = resize_strokes(job.strokes, width, height)
            start = start_index_for_strength(steps, gradop.strength)
            init = model.encode(target.to(_device(model)).expand(batch_size, -1, -1, -1))
            x = noised_start(init, float(sigmas[start]), generator)
            latents = sample(model, x, sigmas[start:], cond, uncond, cfg, hooks=hooks, first_step=start)
        else:
            decode = decoder or make_gradient_decoder(settings.decoder, model, fit_latent_size=(h, w))
            phases = job.phases(decode, width, height, steps, generator)
            if method == "gradop+":
                latents = sample(
                    model, noise * float(sigmas[0]), sigmas, cond, uncond, cfg, hooks=[*hooks, phases]
                )
                history = phases.history
            else:
                latents, first, last = gradop_relaxed(
                    model,
                    noise,
                    sigmas,
                    cond,
                    uncond,
                    cfg,
                    phases.target,
                    decode,
                    phases.painting,
                    strength=gradop.strength,
                    opt_steps=relaxed_steps,
                    lr=gradop.lr,
                    gamma=gamma,
                    weight_mask=phases.weight_mask,
                    generator=generator,
                    hooks=tuple(hooks),
                    optimiser=gradop.optimiser,
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
    mask: torch.Tensor | None = None  # the blend mask used, [1, 1, H, W] at image resolution


@torch.no_grad()
def edit_image(
    model: DiffusionModel,
    image: torch.Tensor,
    source_prompt: str,
    edit_prompt: str,
    *,
    inversion: InversionSettings | None = None,
    edit_cfg: float = EditSettings.edit_cfg,
    strength: float = 1.0,
    negative_prompt: str = "",
    mask: torch.Tensor | str | None = None,
    eta: float = EditSettings.eta,
    attention_injection: float = EditSettings.attention_injection,
    seed: int = 0,
    with_reconstruction: bool = False,
) -> EditResult:
    """Invert ``image`` ([1,3,H,W] in [0,1]) with the source prompt, then sample back with the edit
    prompt and edit CFG. ``mask`` (latent or image resolution, or "auto" for the cross-attention map of
    the changed words) turns on blended guidance: full edit CFG inside, conditional prediction outside."""
    _check_size(model, image.shape[-1], image.shape[-2])
    if isinstance(mask, str) and mask != "auto":
        raise GuidedInputError("mask", f"must be an image, None or 'auto', got {mask!r}")
    blend = "auto" if isinstance(mask, str) else "none" if mask is None else "inpaint"
    settings = EditSettings(
        edit_cfg=edit_cfg, eta=eta, blend_mask=blend, attention_injection=attention_injection
    )
    latent = model.encode(image.to(_device(model)))
    outcome = aidi_edit(
        model,
        latent,
        source_prompt,
        [edit_prompt],
        [negative_prompt],
        inversion or InversionSettings(),
        settings,
        strength=strength,
        seed=seed,
        mask=None if isinstance(mask, str) else mask,
        with_reconstruction=with_reconstruction,
    )
    recon = None
    if outcome.reconstruction is not None:
        recon = model.decode(outcome.reconstruction).clamp(0, 1)
    return EditResult(
        model.decode(outcome.latents).clamp(0, 1),
        recon,
        outcome.inversion_evals,
        outcome.edit_evals,
        outcome.evals_per_step,
        None if outcome.mask is None else mask_at_image_size(outcome.mask, image.shape[-2:]),
    )
