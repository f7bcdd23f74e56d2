"""AIDI editing, assembled once for every host: invert a latent with the source prompt at the inversion
CFG, then sample back with the edit prompt at the edit CFG, optionally blended through a mask.

``pipeline.edit_image`` (the CLI, the lab) and the WebUI adapter's img2img edit mode both run this; the
hosts only encode the image and decode the result.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from lib_guided.bounds import check_bounds
from lib_guided.diffusion.sampler import StepHook
from lib_guided.diffusion.schedules import ddim_sigmas, start_index_for_strength
from lib_guided.errors import GuidedInputError
from lib_guided.inversion.attention_injection import injected_edit, prompts_line_up
from lib_guided.inversion.edit_mask import auto_edit_mask
from lib_guided.inversion.editing import edit
from lib_guided.inversion.invert import InversionSettings, invert
from lib_guided.protocol import Cond, DiffusionModel, pad_conds

BLEND_MASKS = ("none", "inpaint", "auto")


@dataclass(frozen=True)
class EditSettings:
    """How the edit is sampled; how the image is inverted is :class:`InversionSettings`."""

    edit_cfg: float = 7.5
    eta: float = 0.0  # 0 = deterministic DDIM; > 0 adds fresh noise each step (variants of one inversion)
    blend_mask: str = "none"  # "inpaint": the user's mask; "auto": where source and edit predictions differ
    # share of the edit's steps whose attention maps come from the reconstruction (0 = off). 0.6: on the
    # lab (24 scenes, auto mask, tol 1e-3) edit success 0.71 -> 0.96, background PSNR 26.4 -> 29.4 dB
    # (python tests/measure/edit_levers.py --masks auto --thresholds 0.5 --injections 0 0.3 0.6 1)
    attention_injection: float = 0.6

    BOUNDS: ClassVar[dict[str, tuple[float, float]]] = {"eta": (0.0, 1.0), "attention_injection": (0.0, 1.0)}

    def __post_init__(self) -> None:
        if not (
            isinstance(self.edit_cfg, (int, float))
            and math.isfinite(self.edit_cfg)
            and 0.0 <= self.edit_cfg < 100
        ):
            raise GuidedInputError("edit_cfg", f"must be in [0, 100), got {self.edit_cfg!r}")
        if self.blend_mask not in BLEND_MASKS:
            choices = ", ".join(BLEND_MASKS)
            raise GuidedInputError("blend_mask", f"must be one of {choices}, got {self.blend_mask!r}")
        check_bounds(self)


# progress(phase, k, n, evals): phase "inverting", "editing" or "reconstructing", after its step k of n
Progress = Callable[[str, int, int, int], None]


class _StepReporter(StepHook):
    """Reports each sampling step of the edit (or reconstruction) pass to ``progress``."""

    def __init__(self, progress: Progress, phase: str, steps: int, model) -> None:
        self.progress, self.phase, self.steps, self.model = progress, phase, steps, model
        self.done, self.evals_before = 0, model.evals

    def after_step(self, step, sigma_next, x_next):
        self.done += 1
        self.progress(self.phase, self.done, self.steps, self.model.evals - self.evals_before)
        return x_next


def _reporters(progress: Progress | None, phase: str, steps: int, model) -> tuple[StepHook, ...]:
    return () if progress is None else (_StepReporter(progress, phase, steps, model),)


@dataclass
class EditOutcome:
    latents: torch.Tensor
    reconstruction: torch.Tensor | None  # latent of the plain round trip, when asked for
    inversion_evals: int
    edit_evals: int
    evals_per_step: list[int]
    mask: torch.Tensor | None = None  # the blend mask used [B or 1, 1, h, w] at latent resolution
    injected: bool = False  # attention injection ran (asked for, and the prompts line up)


def _one_image(x: torch.Tensor, negative_prompts: Sequence[str]) -> bool:
    """Every row is the same image with the same negative prompt (so the same inversion)."""
    return (
        x.shape[0] > 1
        and len(set(negative_prompts)) == 1
        and all(torch.equal(x[0], x[i]) for i in range(1, x.shape[0]))
    )


def _first_row(cond: Cond) -> Cond:
    if isinstance(cond, dict):
        return {k: v[:1] for k, v in cond.items()}
    return cond[:1]


def will_inject(
    model: DiffusionModel, settings: EditSettings, source_prompt: str, prompts: Sequence[str]
) -> bool:
    """Whether the edit runs with attention injection (then the reconstruction needs no pass of its own).

    The maps are handed over token for token, so only between prompts that line up; self-attention alone
    made the lab's edits worse (``tests/measure/edit_levers.py --self-only``), so then nothing is injected.
    """
    return settings.attention_injection > 0 and prompts_line_up(model, source_prompt, prompts)


@torch.no_grad()
def aidi_edit(
    model: DiffusionModel,
    init_latent: torch.Tensor,
    source_prompt: str,
    prompts: Sequence[str],
    negative_prompts: Sequence[str],
    inversion: InversionSettings,
    settings: EditSettings | None = None,
    *,
    strength: float = 1.0,
    seed: int = 0,
    mask: torch.Tensor | None = None,
    with_reconstruction: bool = False,
    progress: Progress | None = None,
) -> EditOutcome:
    """Edit ``init_latent`` ([B, C, h, w]); ``prompts`` / ``negative_prompts`` have one entry per row.

    ``strength`` sets how deep to invert (1 = to pure noise). ``mask`` (any resolution, 1 = edit here) is
    used when ``settings.blend_mask`` is "inpaint"; "auto" computes it (``edit_mask.auto_edit_mask``).
    ``progress`` hears about every inversion, edit and reconstruction step (see :data:`Progress`).
    """
    settings = settings or EditSettings()
    if not 0.0 < strength <= 1.0:
        raise GuidedInputError("strength", f"must be in (0, 1], got {strength}")
    sigmas = ddim_sigmas(inversion.steps, model.sigma_table)
    sigmas = sigmas[start_index_for_strength(inversion.steps, strength) :]
    batch = init_latent.shape[0]
    source, target, uncond = (
        model.encode_prompt([source_prompt] * batch),
        model.encode_prompt(list(prompts)),
        model.encode_prompt(list(negative_prompts)),
    )
    empty = getattr(model, "empty_prompt_chunk", None)
    if empty is not None:  # prompts over 75 tokens: 154 / 231 ... long contexts batched with 77
        source, target, uncond = pad_conds([source, target, uncond], empty)
    x = init_latent.float()
    before = model.evals
    on_step = None if progress is None else functools.partial(progress, "inverting")
    if _one_image(x, negative_prompts):  # n variants of one image (the WebUI's batch): one inversion
        inverted = invert(
            model, x[:1], sigmas, _first_row(source), _first_row(uncond), inversion, on_step=on_step
        )
        inverted = dataclasses.replace(
            inverted, trajectory=[t.expand(batch, *t.shape[1:]) for t in inverted.trajectory]
        )
    else:
        inverted = invert(model, x, sigmas, source, uncond, inversion, on_step=on_step)
    after_inversion = model.evals
    blend = None
    if settings.blend_mask == "inpaint" and mask is not None:
        blend = torch.nn.functional.interpolate(
            mask.reshape(-1, 1, *mask.shape[-2:]).float(), size=tuple(x.shape[-2:]), mode="area"
        ).to(x.device)
    elif settings.blend_mask == "auto":
        ascending = [float(s) for s in reversed(sigmas)]
        blend = auto_edit_mask(
            model, inverted.trajectory, ascending, source_prompt, prompts[0], source, target
        )
    generator = torch.Generator().manual_seed(int(seed))
    steps = len(sigmas) - 1
    recon = None
    injected = will_inject(model, settings, source_prompt, prompts)
    if injected:  # the reconstruction runs beside the edit, in the same calls
        edited, recon = injected_edit(
            model,
            inverted,
            source,
            target,
            uncond,
            inversion.inversion_cfg,
            settings.edit_cfg,
            settings.attention_injection,
            cross=True,
            mask=blend,
            eta=settings.eta,
            generator=generator,
            hooks=_reporters(progress, "editing", steps, model),
        )
        if not with_reconstruction:
            recon = None
    else:
        edited = edit(
            model,
            inverted,
            None,
            target,
            uncond,
            settings.edit_cfg,
            mask=blend,
            eta=settings.eta,
            generator=generator,
            hooks=_reporters(progress, "editing", steps, model),
        )
    edit_evals = model.evals - after_inversion
    if with_reconstruction and recon is None:
        recon = edit(
            model,
            inverted,
            None,
            source,
            uncond,
            inversion.inversion_cfg,
            hooks=_reporters(progress, "reconstructing", steps, model),
        )
    return EditOutcome(
        edited.to(init_latent.dtype),
        recon,
        after_inversion - before,
        edit_evals,
        inverted.evals_per_step,
        blend,
        injected,
    )
