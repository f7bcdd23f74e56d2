"""A cross-attention module's attention computed explicitly, with the region bias added to the scores.

The scores are float32 (autocast off) and get ``log(1 + sigma) * max(QK^T/sqrt(d)) * M_k`` on the
columns of the bound tokens, max per batch row and head, before the softmax; the probabilities can be
handed to a recorder. The module's own layers (projections, norms, output) are reused, so the result
matches its forward when the bias is zero.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from lib_guided.regions.attention_recorder import AttentionRecorder


def check_supported(module: nn.Module) -> None:
    """Raise when ``module`` is not a cross-attention module the manual path can reproduce."""
    missing = [
        name for name in ("to_q", "to_k", "to_v", "to_out", "heads") if getattr(module, name, None) is None
    ]
    if missing:
        raise TypeError(f"{type(module).__name__} lacks {', '.join(missing)}: not a cross-attention module")
    unsupported = [
        name
        for name in ("spatial_norm", "add_k_proj", "add_v_proj")
        if getattr(module, name, None) is not None
    ]
    if unsupported:
        raise ValueError(f"{type(module).__name__}: region control does not support {', '.join(unsupported)}")
    inner_kv = getattr(module, "inner_kv_dim", None)
    if inner_kv is not None and inner_kv != getattr(module, "inner_dim", inner_kv):
        raise ValueError(f"{type(module).__name__}: grouped key/value heads are not supported")


def split_heads(tensor: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, inner = tensor.shape
    return tensor.reshape(batch, length, heads, inner // heads).transpose(1, 2)


def merge_heads(tensor: torch.Tensor) -> torch.Tensor:
    batch, heads, length, dim = tensor.shape
    return tensor.transpose(1, 2).reshape(batch, length, heads * dim)


def project_out(module: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """to_out[0] (Linear) then to_out[1] (Dropout); also accepts a bare Linear."""
    to_out = module.to_out
    if isinstance(to_out, (nn.Sequential, nn.ModuleList)):
        for layer in to_out:
            hidden = layer(hidden)
        return hidden
    return to_out(hidden)


def _full_precision(device: torch.device) -> contextlib.AbstractContextManager:
    """Autocast off, so the scores really are float32 (the WebUI samples under autocast)."""
    if device.type in ("cuda", "cpu", "xpu"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _scores(module: nn.Module, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    scale = getattr(module, "scale", None)
    if scale is None:
        scale = q.shape[-1] ** -0.5
    with _full_precision(q.device):
        return torch.matmul(q.float(), k.float().transpose(-1, -2)).mul_(scale)


def _add_region_bias(scores: torch.Tensor, bias: torch.Tensor, strength: float) -> torch.Tensor:
    """``scores + strength * max(scores) * bias``, max per batch row and head; bias [N, T] broadcasts."""
    peak = scores.amax(dim=(-2, -1), keepdim=True) * strength
    if scores.requires_grad:  # amax needs its input for backward: no in-place update
        return torch.addcmul(scores, peak, bias)
    return scores.addcmul_(peak, bias)


def _apply_user_mask(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    mask = mask.to(scores.device)
    if mask.dtype == torch.bool:
        return scores.masked_fill(~mask, -torch.finfo(scores.dtype).max)
    return scores + mask.to(scores.dtype)


def manual_attention(
    module: nn.Module,
    x: torch.Tensor,
    context: torch.Tensor,
    *,
    region_bias: torch.Tensor | None = None,
    strength: float = 0.0,
    region_block: torch.Tensor | None = None,
    user_mask: torch.Tensor | None = None,
    recorder: AttentionRecorder | None = None,
) -> torch.Tensor:
    """The module's attention computed explicitly (float32 scores) with the region bias added and the
    ``region_block`` pairs masked out."""
    residual = x
    if getattr(module, "group_norm", None) is not None:
        x = module.group_norm(x.transpose(1, 2)).transpose(1, 2)
    if getattr(module, "norm_cross", None) is not None:
        context = module.norm_encoder_hidden_states(context)
    q = split_heads(module.to_q(x), module.heads)
    k = split_heads(module.to_k(context), module.heads)
    v = split_heads(module.to_v(context), module.heads)
    if getattr(module, "norm_q", None) is not None:
        q = module.norm_q(q)
    if getattr(module, "norm_k", None) is not None:
        k = module.norm_k(k)
    scores = _scores(module, q, k)
    if region_bias is not None:
        scores = _add_region_bias(scores, region_bias, strength)
    if region_block is not None:  # [N, T] bool: bound tokens outside their regions
        scores = scores.masked_fill(region_block, -torch.finfo(scores.dtype).max)
    if user_mask is not None:
        scores = _apply_user_mask(scores, user_mask)
    probs = scores.softmax(dim=-1)
    del scores
    if recorder is not None:
        recorder.add(probs)
    hidden = merge_heads(torch.matmul(probs.to(v.dtype), v))
    hidden = project_out(module, hidden)
    if getattr(module, "residual_connection", False):
        hidden = hidden + residual
    return hidden / getattr(module, "rescale_output_factor", 1.0)
