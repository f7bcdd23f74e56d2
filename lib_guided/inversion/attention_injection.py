"""Attention injection for AIDI edits (prompt-to-prompt style): the reconstruction runs beside the edit in
one batch, and for the first part of the steps the edit's attention uses the reconstruction's maps.

A self-attention map says which parts of the image look at which: it carries the layout. The edit branch
keeps its own values (what it draws) but, while the injection is on, takes the reconstruction branch's
queries and keys, so softmax(QK^T) is exactly the reconstruction's map; the edit then changes what the
prompt changed and keeps where things are. When the prompts line up token for token (a word swapped),
the cross-attention maps are handed over the same way (prompt-to-prompt's "replace": the new word is
drawn where the old one was). The batch is [reference rows; edited rows] in every CFG half,
so the same forward serves the WebUI's ldm / sgm attention and diffusers' (see
:func:`lib_guided.regions.attention_forward.parse_call`). With the fraction at 0 nothing here runs.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lib_guided.diffusion.sampler import StepHook, sample
from lib_guided.errors import GuidedInputError
from lib_guided.inversion.invert import InversionResult
from lib_guided.protocol import Cond, DiffusionModel, cat_conds, repeat_cond
from lib_guided.regions.attention import patched_forwards
from lib_guided.regions.attention_forward import parse_call
from lib_guided.regions.manual_attention import merge_heads, project_out, split_heads


def check_fraction(fraction: float) -> None:
    if not (isinstance(fraction, (int, float)) and math.isfinite(fraction) and 0.0 <= fraction <= 1.0):
        raise GuidedInputError("attention_injection", f"must be in [0, 1], got {fraction!r}")


class AttentionInjection:
    """Which rows take whose queries and keys, and whether the injection is on for this model call.

    Rows come in groups of ``2 * images``: the first ``images`` are the reference (reconstruction)
    branch, the next ``images`` the edit branch of the same images. The model batch is one group (no
    CFG) or two ([cond; uncond]).
    """

    def __init__(self, images: int, cross: bool = False) -> None:
        self.images = int(images)
        self.cross = cross  # also the cross-attention maps (the prompts' tokens line up one to one)
        self.active = False
        self.calls = 0  # attention calls that were injected (the tests read it)

    def source_rows(self, batch: int, device: torch.device) -> torch.Tensor | None:
        group = 2 * self.images
        if batch % group:
            return None
        rows = torch.arange(batch, device=device)
        for start in range(0, batch, group):
            rows[start + self.images : start + group] = rows[start : start + self.images]
        return rows


def _injected_forward(module: nn.Module, original: Callable[..., Any], injection: AttentionInjection):
    def forward(*args: Any, **kwargs: Any) -> Any:
        if not injection.active:
            return original(*args, **kwargs)
        call = parse_call(args, kwargs)
        if call is None or call.get("mask") is not None:
            return original(*args, **kwargs)
        x, context = call.get("x"), call.get("context")
        if not isinstance(x, torch.Tensor) or x.ndim != 3:
            return original(*args, **kwargs)
        cross = context is not None and context is not x
        if cross and not (
            injection.cross
            and isinstance(context, torch.Tensor)
            and context.ndim == 3
            and context.shape[0] == x.shape[0]
        ):
            return original(*args, **kwargs)  # unaligned prompts, or a context layout we do not know
        rows = injection.source_rows(x.shape[0], x.device)
        if rows is None:
            return original(*args, **kwargs)
        injection.calls += 1
        keys = context if cross else x
        q = split_heads(module.to_q(x), module.heads).index_select(0, rows)
        k = split_heads(module.to_k(keys), module.heads).index_select(0, rows)
        v = split_heads(module.to_v(keys), module.heads)
        hidden = F.scaled_dot_product_attention(q, k, v, scale=getattr(module, "scale", None))
        return project_out(module, merge_heads(hidden))

    return forward


def injected_attention(
    modules: Iterable[nn.Module], injection: AttentionInjection
) -> contextlib.AbstractContextManager:
    """Route the attention ``modules`` through the injection inside the block (restored on exit)."""
    return patched_forwards(modules, lambda module, original: _injected_forward(module, original, injection))


class _InjectionWindow(StepHook):
    """Turns the injection on for the first ``steps_on`` sampling steps."""

    def __init__(self, injection: AttentionInjection, steps_on: int, first_step: int) -> None:
        self.injection, self.steps_on, self.first_step = injection, steps_on, first_step

    def before_model(self, step, sigma, x):
        self.injection.active = step - self.first_step < self.steps_on


def prompts_line_up(model: DiffusionModel, source_prompt: str, edit_prompts: Sequence[str]) -> bool:
    """True when every edit prompt has as many tokens as the source (a word swapped for a word), so
    token k of one is token k of the other and the cross-attention maps can be handed over as they are."""
    count = len(model.token_positions(source_prompt, source_prompt))
    return count > 0 and all(len(model.token_positions(p, p)) == count for p in edit_prompts)


def self_attention_modules(model: DiffusionModel) -> list[nn.Module]:
    finder = getattr(model, "self_attention_modules", None)
    modules = [] if finder is None else [m for _, m in finder()]
    if not modules:
        raise GuidedInputError("attention_injection", "this model exposes no self-attention layers")
    return modules


@torch.no_grad()
def injected_edit(
    model: DiffusionModel,
    inversion: InversionResult,
    source: Cond,
    target: Cond,
    uncond: Cond,
    inversion_cfg: float,
    edit_cfg: float,
    fraction: float,
    *,
    cross: bool = False,
    mask: torch.Tensor | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    hooks: Sequence[StepHook] = (),
) -> tuple[torch.Tensor, torch.Tensor]:
    """(edited, reconstruction) latents, sampled together with the edit's self-attention injected from the
    reconstruction for the first ``fraction`` of the steps. The reconstruction branch is exactly the
    plain round trip's computation (its own prompt and CFG, eta 0); ``mask`` and ``eta`` apply to the edit.
    ``cross`` injects the cross-attention maps too (only for prompts that line up: :func:`prompts_line_up`).
    """
    check_fraction(fraction)
    noise = inversion.noise_latent
    images = noise.shape[0]
    steps = len(inversion.sigmas) - 1
    injection = AttentionInjection(images, cross=cross)
    window = _InjectionWindow(injection, round(fraction * steps), first_step=0)
    row_values = [inversion_cfg] * images + [edit_cfg] * images
    scale = torch.tensor(row_values, dtype=torch.float32).reshape(-1, 1, 1, 1)
    row_eta = torch.tensor([0.0] * images + [eta] * images).reshape(-1, 1, 1, 1)
    both_mask = None
    if mask is not None:
        edit_mask = mask.expand(images, *mask.shape[1:])
        both_mask = torch.cat([torch.ones_like(edit_mask), edit_mask])
    cond = cat_conds([repeat_cond(source, images), repeat_cond(target, images)])
    modules = self_attention_modules(model)
    if cross:
        modules += [m for _, m in model.attention_modules()]
    with injected_attention(modules, injection):
        both = sample(
            model,
            torch.cat([noise, noise]),
            inversion.sigmas,
            cond,
            cat_conds([repeat_cond(uncond, images)] * 2),
            scale,
            mask=both_mask,
            eta=row_eta if eta > 0 else 0.0,
            generator=generator,
            hooks=(window, *hooks),
        )
    return both[images:], both[:images]
