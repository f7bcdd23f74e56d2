"""The small interface the core needs from a latent diffusion model.

The WebUI adapter, the diffusers adapter and the tests' tiny models all provide it, so GradOP,
region control and inversion never see which framework is underneath.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import torch
from torch import nn

# A text conditioning: a tensor [B, L, D] (SD 1.x/2.x) or a dict of tensors (SDXL: crossattn + vector).
Decoder = Callable[[torch.Tensor], torch.Tensor]  # latent -> image in [0, 1], differentiable
Cond = torch.Tensor | dict


@runtime_checkable
class DiffusionModel(Protocol):
    sigma_table: torch.Tensor  # ascending sigmas of the training timesteps (float64)
    vae_scale_factor: int  # image pixels per latent pixel
    evals: int  # UNet forward calls so far (a batched call counts once)

    def eps(self, x: torch.Tensor, sigma: torch.Tensor, cond: Cond) -> torch.Tensor:
        """Noise prediction for sigma-space ``x`` (``x = x0 + sigma * eps``), one sigma per row."""

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Image [B,3,H,W] in about [0, 1], differentiable with respect to ``latent``."""

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Latent (already multiplied by the VAE scaling factor) of an image in [0, 1]."""

    def encode_prompt(self, prompts: Sequence[str]) -> Cond: ...

    def attention_modules(self) -> list[tuple[str, nn.Module]]:
        """Cross-attention modules (those exposing to_q, to_k, to_v, to_out, heads)."""

    # Optional: ``self_attention_modules()``, the same for self-attention (AIDI's attention injection).

    def token_positions(self, prompt: str, phrase: str) -> list[int]:
        """Indices in the encoded prompt of the tokens of ``phrase`` (empty if absent)."""


def cond_context(cond: Cond) -> torch.Tensor:
    """The cross-attention context of a conditioning (SDXL's is the dict's ``crossattn``)."""
    return cond["crossattn"] if isinstance(cond, dict) else cond


def cat_conds(conds: Sequence[Cond]) -> Cond:
    """Concatenate conditionings along the batch axis (tensors or SDXL-style dicts)."""
    first = conds[0]
    if isinstance(first, dict):
        return {k: torch.cat([c[k] for c in conds]) for k in first}
    return torch.cat(list(conds))


def pad_conds(conds: Sequence[Cond], empty_chunk: torch.Tensor) -> list[Cond]:
    """Give every conditioning the longest one's context length by appending ``empty_chunk`` (the empty
    prompt's [1, 77, C] embedding), as the WebUI pads prompts of different 75-token chunk counts."""
    longest = max(cond_context(c).shape[1] for c in conds)
    out = []
    for c in conds:
        tensor = cond_context(c)
        missing = (longest - tensor.shape[1]) // empty_chunk.shape[1]
        if missing:
            pad = empty_chunk.to(tensor).expand(tensor.shape[0], -1, -1).repeat(1, missing, 1)
            tensor = torch.cat([tensor, pad], dim=1)
        out.append({**c, "crossattn": tensor} if isinstance(c, dict) else tensor)
    return out


def repeat_cond(cond: Cond, batch: int) -> Cond:
    """Expand a single-row conditioning to ``batch`` rows (no-op when it already has them)."""
    if isinstance(cond, dict):
        return {k: repeat_cond(v, batch) for k, v in cond.items()}
    if cond.shape[0] == batch:
        return cond
    if cond.shape[0] != 1:
        raise ValueError(f"cond: batch {cond.shape[0]} cannot be expanded to {batch}")
    return cond.expand(batch, *cond.shape[1:])
