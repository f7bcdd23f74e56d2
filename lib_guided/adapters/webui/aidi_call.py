"""AIDI edit mode: invert the img2img latent with the source prompt, sample back with the edit prompt.

It replaces one ``sample_img2img`` call of the WebUI's sampler; the WebUI's own inpaint blending
after sampling still applies, so pixels outside an inpaint mask stay exactly the original.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from lib_guided.diffusion.schedules import ddim_sigmas, start_index_for_strength
from lib_guided.inversion.edit_mask import attention_edit_mask
from lib_guided.inversion.invert import edit, invert, reconstruct
from lib_guided.params import GuidedParams
from lib_guided.protocol import pad_conds


class Interrupted(Exception):
    """The user pressed Interrupt or Skip during our own sampling loop."""


@dataclass
class AidiOutcome:
    latents: torch.Tensor
    reconstruction: torch.Tensor | None
    inversion_evals: int
    evals_per_step: list[int]


class StoppableModel:
    """Forwards to the model, checking the WebUI's interrupt flag before every evaluation."""

    def __init__(self, model, should_stop):
        self._model, self._should_stop = model, should_stop

    def __getattr__(self, name):
        return getattr(self._model, name)

    @property
    def evals(self) -> int:
        return self._model.evals

    def eps(self, x, sigma, cond):
        if self._should_stop():
            raise Interrupted
        return self._model.eps(x, sigma, cond)


@torch.no_grad()
def aidi_edit(
    model,
    params: GuidedParams,
    init_latent: torch.Tensor,
    prompts: list[str],
    negative_prompts: list[str],
    steps: int,
    denoising_strength: float,
    seed: int,
    inpaint_mask: torch.Tensor | None,
) -> AidiOutcome:
    settings = params.inversion_settings(steps)
    schedule = ddim_sigmas(steps, model.sigma_table)
    sigmas = schedule[start_index_for_strength(steps, denoising_strength) :]
    batch = init_latent.shape[0]
    source_prompt = params.source_prompt or prompts[0]
    source, target, uncond = (
        model.encode_prompt([source_prompt] * batch), model.encode_prompt(prompts),
        model.encode_prompt(negative_prompts),
    )
    empty = getattr(model.sd_model, "cond_stage_model_empty_prompt", None)
    if empty is not None:  # prompts over 75 tokens: 154 / 231 ... long contexts batched with 77
        source, target, uncond = pad_conds([source, target, uncond], empty)
    x = init_latent.float()
    before = model.evals
    inversion = invert(model, x, sigmas, source, uncond, settings)
    inversion_evals = model.evals - before
    mask = None
    if params.blend_mask == "inpaint" and inpaint_mask is not None:
        mask = inpaint_mask.to(x).reshape(-1, 1, *x.shape[-2:])[:1]
    elif params.blend_mask == "auto":
        ascending = [float(s) for s in reversed(sigmas)]
        mask = attention_edit_mask(model, inversion.trajectory, ascending, source_prompt, prompts[0])
    generator = torch.Generator().manual_seed(int(seed))
    edited = edit(
        model,
        inversion,
        None,
        target,
        uncond,
        params.edit_cfg,
        mask=mask,
        eta=params.eta,
        generator=generator,
    )
    recon = None
    if params.return_reconstruction:
        recon = reconstruct(model, inversion, source, uncond, settings.inversion_cfg)
    return AidiOutcome(edited.to(init_latent.dtype), recon, inversion_evals, inversion.evals_per_step)
