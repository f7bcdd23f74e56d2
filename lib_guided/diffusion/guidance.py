"""Classifier-free guidance, plain and blended (AIDI: full CFG inside the edit mask only)."""

from __future__ import annotations

import torch

from lib_guided.protocol import Cond, DiffusionModel, cat_conds, repeat_cond

Scale = float | torch.Tensor  # one scale, or one per batch row ([B, 1, 1, 1])


def _is_one(scale: Scale) -> bool:
    if isinstance(scale, torch.Tensor):
        return bool((scale == 1.0).all())
    return scale == 1.0


def combine_cfg(
    eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: Scale, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """``eps_u + w (eps_c - eps_u)``; with a mask M, ``w = (scale - 1) M + 1`` per pixel.

    M = 0 gives the plain conditional prediction, M = 1 full CFG at ``scale``. A tensor ``scale``
    ([B, 1, 1, 1]) gives each row its own (AIDI's reconstruction and edit branches in one batch).
    """
    if isinstance(scale, torch.Tensor):
        scale = scale.to(eps_cond)
    if mask is None:
        return eps_uncond + scale * (eps_cond - eps_uncond)
    weight = (scale - 1.0) * mask.to(eps_cond) + 1.0
    return eps_uncond + weight * (eps_cond - eps_uncond)


def guided_eps(
    model: DiffusionModel,
    x: torch.Tensor,
    sigma: torch.Tensor,
    cond: Cond,
    uncond: Cond | None,
    scale: Scale,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Guided noise prediction in ONE model call: rows are [cond; uncond] (the WebUI's layout too).

    ``scale == 1`` without a mask, or no ``uncond``, needs only the conditional rows.
    """
    batch = x.shape[0]
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(batch)
    cond = repeat_cond(cond, batch)
    if uncond is None or (_is_one(scale) and mask is None):
        return model.eps(x, sigma, cond)
    both = model.eps(
        torch.cat([x, x]), torch.cat([sigma, sigma]), cat_conds([cond, repeat_cond(uncond, batch)])
    )
    eps_cond, eps_uncond = both.chunk(2)
    return combine_cfg(eps_cond, eps_uncond, scale, mask)
