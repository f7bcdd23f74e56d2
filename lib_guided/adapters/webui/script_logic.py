"""What the "Guided Synthesis" script does at each WebUI hook; scripts/guided_synthesis.py delegates here."""

from __future__ import annotations

import functools
import os
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from lib_guided.adapters.webui.aidi_call import Interrupted, StoppableModel
from lib_guided.adapters.webui.guided_call import denoiser_step, guided_sampler_call
from lib_guided.adapters.webui.host import WEBUI, WebUIHost
from lib_guided.adapters.webui.host_choices import check_host_choices
from lib_guided.adapters.webui.model import WebUIModel
from lib_guided.edit_job import aidi_edit, will_inject
from lib_guided.errors import GuidedInputError
from lib_guided.gradop.decoders.factory import make_gradient_decoder
from lib_guided.gradop.decoders.linear_cache import LinearDecoderCache
from lib_guided.images import mask_at_image_size, psnr, tensor_to_pil
from lib_guided.params import GuidedParams
from lib_guided.stroke_job import StrokeJob


@dataclass
class PreparedRun:
    params: GuidedParams
    host: WebUIHost = WEBUI
    job: StrokeJob | None = None
    reconstructions: list = field(default_factory=list)
    psnrs: list[float] = field(default_factory=list)
    masks: list = field(default_factory=list)  # the automatic blend masks, at image size, to show


def prepare(p, params: GuidedParams, is_img2img: bool, host: WebUIHost = WEBUI) -> PreparedRun | None:
    """Validate everything before any sampling; the WebUI's state is untouched until a sampler call."""
    if not params.enabled or params.mode == "off":
        return None
    if params.mode == "edit" and not is_img2img:
        raise GuidedInputError("mode", "'edit' (AIDI) works in img2img; txt2img supports 'strokes'")
    check_host_choices(params)
    run = PreparedRun(params, host)
    if params.mode == "strokes":
        if params.strokes is None:
            raise GuidedInputError("strokes", "stroke guidance is enabled but no painting was given")
        run.job = job = StrokeJob.prepare(
            params.strokes,
            params.palette,
            p.width,
            p.height,
            params.stroke_settings(),
            params.gradop_settings(),
            largest_output=_largest_output(p),
        )
        if job.binds_phrases:
            _check_prompts_for_binding([*p.all_prompts, *(getattr(p, "all_hr_prompts", None) or [])], p.steps)
        if job.phrases:
            p.all_prompts = [job.prompt(prompt) for prompt in p.all_prompts]
            if getattr(p, "all_hr_prompts", None):  # the hires pass encodes its own prompts
                p.all_hr_prompts = [job.prompt(prompt) for prompt in p.all_hr_prompts]
    p.extra_generation_params.update(params.infotext())
    return run


_AND = re.compile(r"\bAND\b")


def _check_prompts_for_binding(prompts, steps: int) -> None:
    """Region binding finds each phrase's tokens in the one context the prompt encodes to. AND makes one
    context per sub-prompt and prompt editing changes the context mid-run: refuse both, clearly.

    Checked in process() and again on the prompt a sampler call encodes: another extension's process()
    may rewrite the prompts after ours (Regional Prompter turns BREAK into AND)."""
    from modules import prompt_parser

    for prompt in set(prompts):
        if _AND.search(prompt):
            raise GuidedInputError(
                "prompt",
                "binding phrases to colours does not work with AND sub-prompts; remove AND, "
                "or leave the phrases empty (or region weight 0) to guide by colour only",
            )
        schedules = prompt_parser.get_learned_conditioning_prompt_schedules([prompt], int(steps))
        if len(schedules[0]) > 1:
            raise GuidedInputError(
                "prompt",
                "binding phrases to colours does not work with prompt editing ([from:to:when], "
                "[a|b]); use a plain prompt, or leave the phrases empty to guide by colour only",
            )


def _largest_output(p) -> tuple[int, int]:
    """The biggest image this job makes: the first pass, or the hires pass's target when it has one."""
    width, height = int(p.width), int(p.height)
    if getattr(p, "enable_hr", False):
        width = max(width, int(getattr(p, "hr_upscale_to_x", 0) or 0), int(width * float(p.hr_scale or 1)))
        height = max(height, int(getattr(p, "hr_upscale_to_y", 0) or 0), int(height * float(p.hr_scale or 1)))
    return width, height


def fail_job(p, error: Exception) -> None:
    """Make this job end with ``error`` when it starts sampling, before anything is patched.

    The API then answers with the message (HTTP 500, ``errors`` field) and the UI shows it. Any
    exception, not only bad input: the WebUI would otherwise log it and generate without us.
    """
    if isinstance(error, GuidedInputError):
        message = f"Guided Synthesis: {error}"
    else:
        traceback.print_exception(error)  # a bug of ours: the console gets the whole story
        message = f"Guided Synthesis: could not prepare this job ({type(error).__name__}: {error})"

    def refuse(*args, **kwargs):
        raise ValueError(message) from error

    p.sample = refuse


_LINEAR_DECODERS: LinearDecoderCache | None = None  # fitted once per checkpoint, kept on disk


def _linear_decoders() -> LinearDecoderCache:
    """The fitted linear decoders, in ``models/GuidedSynthesis`` (a few hundred bytes per checkpoint):
    a checkpoint is fitted once, not once per WebUI start."""
    global _LINEAR_DECODERS
    if _LINEAR_DECODERS is None:
        from modules import paths

        _LINEAR_DECODERS = LinearDecoderCache(Path(paths.models_path) / "GuidedSynthesis")
    return _LINEAR_DECODERS


def checkpoint_key(info) -> str | None:
    """What identifies a checkpoint's weights: its sha256, else (``--no-hashing``) its file's path, size and
    modification time, so that a file replaced under the same name is fitted again."""
    if getattr(info, "sha256", None):
        return str(info.sha256)
    filename = getattr(info, "filename", None)
    if not filename:
        return None
    try:
        stat = os.stat(filename)
    except OSError:
        return str(filename)
    return f"{filename}:{stat.st_size}:{int(stat.st_mtime)}"


def _decoder(model: WebUIModel, params: GuidedParams):
    key = checkpoint_key(getattr(model.sd_model, "sd_checkpoint_info", None))
    return make_gradient_decoder(params.decoder, model, _linear_decoders(), cache_key=key)


def _stroke_call(run: PreparedRun, model: WebUIModel, x: torch.Tensor, steps: int, prompt: str):
    job = run.job
    height, width = x.shape[-2] * model.vae_scale_factor, x.shape[-1] * model.vae_scale_factor
    with run.host.autograd():  # the decoder's fitted tensors take part in the gradient
        gradop = job.phases(_decoder(model, run.params), width, height, steps)
    control = None
    if job.binds_phrases:
        _check_prompts_for_binding([prompt], steps)
        control = job.region_control(model, prompt, tuple(x.shape[-2:]))
    return gradop, control


def install_for_this_sampling(p, run: PreparedRun | None, is_img2img: bool) -> None:
    """Wrap this sampler's next call; the patches inside live exactly as long as that call."""
    if run is None:
        return
    if run.params.mode == "edit":
        _wrap_next_call(p.sampler, {"sample_img2img": functools.partial(_aidi_sample, p, run)})
        return
    hires = getattr(p, "is_hr_pass", False)
    wanted = is_img2img or {"first": not hires, "second": hires, "both": True}[run.params.hires_pass]
    if wanted:
        _wrap_next_call(
            p.sampler,
            {name: functools.partial(_strokes_sample, p, run, name) for name in ("sample", "sample_img2img")},
        )


def _wrap_next_call(sampler, replacements: dict) -> None:
    """Instance-level one-shot wrappers: the first call restores the sampler, then runs ours."""
    saved = {name: sampler.__dict__.get(name) for name in replacements}

    def restore() -> None:
        for name, value in saved.items():
            if value is None:
                sampler.__dict__.pop(name, None)
            else:
                sampler.__dict__[name] = value

    for name, replacement in replacements.items():
        original = getattr(sampler, name)

        def call(*args, _replacement=replacement, _original=original, **kwargs):
            restore()
            return _replacement(_original, *args, **kwargs)

        setattr(sampler, name, call)


def _strokes_sample(p, run: PreparedRun, name: str, original, *args, **kwargs):
    from modules import sd_samplers_timesteps, shared

    model = run.host.model(p.sd_model)
    x = args[1] if len(args) > 1 else kwargs["x"]
    steps = kwargs.get("steps") or p.steps
    if name == "sample_img2img":  # the WebUI runs only the denoising-strength part of the schedule
        steps = max(1, int(min(p.denoising_strength, 0.999) * steps))
    hires = getattr(p, "is_hr_pass", False) and getattr(p, "hr_prompts", None)
    prompt = p.hr_prompts[0] if hires else p.prompts[0]  # the prompt this pass's conds were made from
    try:
        gradop, control = _stroke_call(run, model, x, steps, prompt)
    except GuidedInputError as error:  # found only now (the prompt as encoded): still before any patch
        raise ValueError(f"Guided Synthesis: {error}") from error
    gradop.stop = lambda: bool(shared.state.interrupted or shared.state.skipped)
    gradop.progress = _show_progress
    timestep = isinstance(p.sampler, sd_samplers_timesteps.CompVisSampler)
    denoiser = p.sampler.model_wrap_cfg
    step = lambda: denoiser_step(denoiser)  # noqa: E731
    with guided_sampler_call(p.sampler, model, gradop, control, timestep, step, host=run.host):
        out = original(*args, **kwargs)
    if gradop.history:
        losses = "; ".join(f"{s}:{a:.4f}->{b:.4f}" for s, a, b in gradop.history)
        p.extra_generation_params["Guided stroke loss"] = losses
    return out


def _show_progress(phase: int, phases: int, adam_step: int, adam_steps: int, latent: torch.Tensor) -> None:
    """The WebUI's progress text and live preview during a gradient phase."""
    from modules import shared

    shared.state.textinfo = (
        f"Guided strokes: phase {phase} of {phases}, Adam step {adam_step} of {adam_steps}"
    )
    shared.state.current_latent = latent  # the preview shows the latent being optimised


def _aidi_sample(p, run: PreparedRun, original, *args, **kwargs):
    from modules import shared

    x = args[1] if len(args) > 1 else kwargs["x"]
    if len(getattr(p, "init_images", None) or ()) == 1 and x.shape[0] > 1:
        # one image repeated over the batch; the WebUI encodes each row with its own sample of the VAE's
        # posterior, so the rows differ by noise that is not in the image: edit one latent, n variants
        x = x[:1].expand_as(x)
    model = run.host.model(p.sd_model)
    steps = kwargs.get("steps") or p.steps
    stoppable = StoppableModel(model, lambda: shared.state.interrupted or shared.state.skipped)
    try:
        with run.host.own_sampling(p, x):
            outcome = _aidi_edit(stoppable, run.params, x, p, steps)
    except Interrupted:
        return x  # like the WebUI's samplers: an interrupted run returns what it has (here: the input)
    p.extra_generation_params["Guided inversion evals"] = outcome.inversion_evals
    p.extra_generation_params["Guided evals per step"] = round(outcome.inversion_evals / max(steps, 1), 2)
    if outcome.reconstruction is not None:
        with torch.no_grad():
            recon = model.decode(outcome.reconstruction.to(x)).clamp(0, 1).float()
            original_image = model.decode(x).clamp(0, 1).float()
        run.reconstructions.append(recon.cpu())
        run.psnrs.append(psnr(recon, original_image))
        p.extra_generation_params["Guided reconstruction PSNR"] = round(run.psnrs[-1], 2)
    if outcome.mask is not None and run.params.blend_mask == "auto":
        size = [side * model.vae_scale_factor for side in x.shape[-2:]]
        run.masks.append(mask_at_image_size(outcome.mask.cpu(), size).expand(-1, 3, -1, -1))
        p.extra_generation_params["Guided auto mask share"] = round(float(outcome.mask.mean()), 3)
    return outcome.latents


def _aidi_edit(model, params: GuidedParams, x: torch.Tensor, p, steps: int):
    nmask = getattr(p, "nmask", None)  # the inpaint mask at latent size, 1 = repaint
    mask = nmask.to(x).reshape(-1, 1, *x.shape[-2:])[:1] if nmask is not None else None
    inversion = params.inversion_settings(steps)
    source_prompt = params.source_prompt or p.prompts[0]
    injected = will_inject(model, params.edit_settings(), source_prompt, p.prompts)
    if params.attention_injection > 0 and not injected:
        p.extra_generation_params["Guided injection skipped"] = "prompts differ in token count"
    return aidi_edit(
        model,
        x,
        source_prompt,
        p.prompts,
        p.negative_prompts,
        inversion,
        params.edit_settings(),
        strength=p.denoising_strength,
        seed=p.seeds[0],
        mask=mask,
        with_reconstruction=params.return_reconstruction,
        # with attention injection the reconstruction rides along in the edit's calls: no third pass
        progress=_EditProgress(params.return_reconstruction and not injected),
    )


class _EditProgress:
    """The WebUI's progress bar and text during an AIDI edit: inversion, edit, then the reconstruction."""

    PHASES = ("inverting", "editing", "reconstructing")

    def __init__(self, with_reconstruction: bool) -> None:
        self.passes = 3 if with_reconstruction else 2

    def __call__(self, phase: str, k: int, n: int, evals: int) -> None:
        from modules import shared

        done = self.PHASES.index(phase) * n + k
        shared.state.sampling_steps = self.passes * n
        shared.state.sampling_step = done
        count = f", {evals} model evaluations" if phase == "inverting" else ""
        shared.state.textinfo = f"Guided edit: {phase}, step {k} of {n}{count}"


def append_reconstructions(processed, run: PreparedRun | None) -> None:
    """Show the plain reconstruction beside the edit so the user sees how faithful the inversion was,
    and the automatic blend mask (white = repainted) so they see what the edit was allowed to change."""
    if run is None:
        return
    for recon, score in zip(run.reconstructions, run.psnrs, strict=True):
        for image in recon:
            processed.images.append(tensor_to_pil(image))
            processed.infotexts.append(f"AIDI reconstruction, PSNR vs the VAE round trip: {score:.2f} dB")
    for masks in run.masks:
        for mask in masks:
            processed.images.append(tensor_to_pil(mask))
            share = float(mask[0].mean())
            processed.infotexts.append(f"AIDI automatic blend mask: {share:.1%} of the image repainted")
