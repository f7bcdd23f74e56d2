"""AIDI's automatic blend mask: where the model attends to the words that differ between prompts."""

from __future__ import annotations

import difflib
import re

import torch
import torch.nn.functional as F

from lib_guided.protocol import DiffusionModel, repeat_cond
from lib_guided.regions.attention import controlled_attention
from lib_guided.regions.attention_recorder import AttentionRecorder

_WORD = re.compile(r"[\w'-]+")


def changed_words(source_prompt: str, edit_prompt: str) -> tuple[list[str], list[str]]:
    """(words removed from the source, words added in the edit), by a word-level diff."""
    src, dst = _WORD.findall(source_prompt.lower()), _WORD.findall(edit_prompt.lower())
    removed: list[str] = []
    added: list[str] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=src, b=dst, autojunk=False).get_opcodes():
        if op in ("replace", "delete"):
            removed.extend(src[i1:i2])
        if op in ("replace", "insert"):
            added.extend(dst[j1:j2])
    return removed, added


def _positions(model: DiffusionModel, prompt: str, words: list[str]) -> list[int]:
    return sorted({p for word in words for p in model.token_positions(prompt, word)})


def _attention_map(
    model: DiffusionModel, states: list[tuple[torch.Tensor, float]], prompt: str, positions: list[int]
) -> torch.Tensor | None:
    """Mean cross-attention [B, 1, h, w] of ``positions`` over the given (latent, sigma) states."""
    if not positions:
        return None
    latent = states[0][0]
    recorder = AttentionRecorder(tuple(latent.shape[-2:]), cond_rows=None)
    cond = model.encode_prompt([prompt])
    with controlled_attention(model.attention_modules(), recorder=recorder):
        for x, sigma in states:
            model.eps(x, torch.full((x.shape[0],), sigma), repeat_cond(cond, x.shape[0]))
    return recorder.maps(positions).mean(dim=1, keepdim=True)


@torch.no_grad()
def attention_edit_mask(
    model: DiffusionModel,
    trajectory: list[torch.Tensor],
    sigmas_ascending: list[float],
    source_prompt: str,
    edit_prompt: str,
    threshold: float = 0.4,
    dilate: int = 1,
) -> torch.Tensor | None:
    """Binary mask [B, 1, h, w] of the edited region, or None when no word changed.

    Uses the inversion trajectory's middle noise levels, where cross-attention maps are most
    localised; the maps of removed words (under the source prompt) and added words (under the edit
    prompt) are normalised to their peak, thresholded, and dilated by ``dilate`` latent pixels so the
    edit has room at the object's border.
    """
    removed, added = changed_words(source_prompt, edit_prompt)
    n = len(trajectory)
    middle = list(range(max(1, n // 4), max(2, (3 * n) // 4)))
    states = [(trajectory[i], sigmas_ascending[i]) for i in middle if i < n and sigmas_ascending[i] > 0]
    if not states:
        return None
    maps = [
        m
        for m in (
            _attention_map(model, states, source_prompt, _positions(model, source_prompt, removed)),
            _attention_map(model, states, edit_prompt, _positions(model, edit_prompt, added)),
        )
        if m is not None
    ]
    if not maps:
        return None
    combined = torch.stack(maps).amax(dim=0)
    peak = combined.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    mask = (combined / peak >= threshold).float()
    if dilate > 0:
        mask = F.max_pool2d(mask, kernel_size=2 * dilate + 1, stride=1, padding=dilate)
    return mask
