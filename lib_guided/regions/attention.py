"""Region control in cross-attention ("paint with words", eDiff-I form) and attention-map recording.

For every token k bound to a painted region, on the conditional batch rows of every cross-attention
layer the scores become ``QK^T/sqrt(d) + log(1 + sigma) * max(QK^T/sqrt(d)) * M_k`` (M_k already holds
the region's weight), with the max taken per batch row and head. Unconditional rows, unbound tokens
and self-attention are left to the module's own forward.

One replacement forward serves the ldm, sgm and diffusers call signatures; it is installed per module
instance by :func:`controlled_attention` and removed again when the context exits.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

RowSelection = int | slice | torch.Tensor | None
ModuleItem = nn.Module | tuple[str, nn.Module]

_MISSING = object()
_X_NAMES = ("x", "hidden_states")
_CONTEXT_NAMES = ("context", "encoder_hidden_states")
_MASK_NAMES = ("mask", "attention_mask")
_MAX_FACTOR = 1 << 12


# ---------------------------------------------------------------------------------------------------------
# Layer resolution


def layer_factor(n_query: int, latent_size: tuple[int, int]) -> int:
    """Downsampling factor f (1, 2, 4, ...) with ``ceil(h/f) * ceil(w/f) == n_query``.

    UNet downsamplers (3x3 conv, stride 2, padding 1) round up, hence the ceil.
    """
    h, w = latent_size
    factor = 1
    while factor <= _MAX_FACTOR:
        if math.ceil(h / factor) * math.ceil(w / factor) == n_query:
            return factor
        if h <= factor and w <= factor:  # already 1x1: larger factors give the same length
            break
        factor *= 2
    raise ValueError(
        f"attention layer with {n_query} query positions matches no downsampling (f = 1, 2, 4, ...) of "
        f"the {h}x{w} latent; was the control built for this latent size?"
    )


def layer_size(n_query: int, latent_size: tuple[int, int]) -> tuple[int, int]:
    """Spatial (height, width) of a layer whose flattened query axis has ``n_query`` positions."""
    factor = layer_factor(n_query, latent_size)
    return math.ceil(latent_size[0] / factor), math.ceil(latent_size[1] / factor)


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A [H, W] mask resampled to ``size`` in float32.

    Shrinking averages the covered pixels (area), so a region aligned with the layer grid stays sharp
    instead of bleeding into its neighbours; growing is bilinear.
    """
    mask = mask.to(torch.float32)
    if tuple(mask.shape) == tuple(size):
        return mask
    shrinking = size[0] <= mask.shape[0] and size[1] <= mask.shape[1]
    if shrinking:
        return F.interpolate(mask[None, None], size=size, mode="area")[0, 0]
    return F.interpolate(mask[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]


def row_mask(cond_rows: RowSelection, batch: int) -> torch.Tensor:
    """Bool [batch] (on the CPU) of the conditional rows; an int n means the first n rows."""
    if cond_rows is None:
        return torch.ones(batch, dtype=torch.bool)
    selected = torch.zeros(batch, dtype=torch.bool)
    if isinstance(cond_rows, bool):
        raise TypeError("cond_rows: give a row count, a slice or a tensor, not a bool")
    if isinstance(cond_rows, int):
        selected[: max(cond_rows, 0)] = True
    elif isinstance(cond_rows, slice):
        selected[cond_rows] = True
    elif isinstance(cond_rows, torch.Tensor) and cond_rows.dtype == torch.bool:
        if cond_rows.shape != (batch,):
            raise ValueError(f"cond_rows: bool mask of shape {tuple(cond_rows.shape)} for a batch of {batch}")
        selected = cond_rows.detach().cpu().clone()
    elif isinstance(cond_rows, torch.Tensor):
        selected[cond_rows.detach().cpu().long()] = True
    else:
        raise TypeError(f"cond_rows: unsupported type {type(cond_rows).__name__}")
    return selected


# ---------------------------------------------------------------------------------------------------------
# State set by the sampler


class RegionControl:
    """Token bindings (token index -> weighted region mask) and the per-call sampler state.

    ``set_step`` must be called before every model call: it gives sigma and the conditional rows
    (the batch is [cond; uncond] in the WebUI and in ``guided_eps``, so ``cond_rows=n`` is the usual).
    """

    def __init__(self, token_masks: dict[int, torch.Tensor], latent_size: tuple[int, int]) -> None:
        for token, mask in token_masks.items():
            if mask.ndim != 2:
                raise ValueError(f"mask of token {token}: expected [H, W], got shape {tuple(mask.shape)}")
            if token < 0:
                raise ValueError(f"token index {token} is negative")
        self.token_masks = dict(token_masks)
        self.latent_size = (int(latent_size[0]), int(latent_size[1]))
        self.sigma: float | None = None
        self.cond_rows: RowSelection = None
        self.bias_cache: dict[tuple[int, int, torch.device], torch.Tensor] = {}
        self._has_weight = any(bool(mask.detach().abs().amax() > 0) for mask in self.token_masks.values())

    def set_step(self, sigma: float | torch.Tensor | None, cond_rows: RowSelection = None) -> None:
        self.sigma = None if sigma is None else float(sigma)
        self.cond_rows = cond_rows

    @property
    def strength_scale(self) -> float:
        """``log(1 + sigma)``: strong guidance at high noise, none at sigma 0."""
        return 0.0 if self.sigma is None else math.log1p(self.sigma)

    @property
    def has_effect(self) -> bool:
        """False when the bias is zero everywhere (no masks, zero weights, sigma unset or 0)."""
        return self._has_weight and self.strength_scale != 0.0

    def bias_for(self, n_query: int, n_tokens: int, device: torch.device) -> torch.Tensor:
        """The [n_query, n_tokens] float32 region bias of one layer resolution (cached)."""
        key = (n_query, n_tokens, torch.device(device))
        if key not in self.bias_cache:
            self.bias_cache[key] = self._build_bias(n_query, n_tokens, device)
        return self.bias_cache[key]

    def _build_bias(self, n_query: int, n_tokens: int, device: torch.device) -> torch.Tensor:
        size = layer_size(n_query, self.latent_size)
        bias = torch.zeros(n_query, n_tokens, dtype=torch.float32, device=device)
        for token, mask in self.token_masks.items():
            if token >= n_tokens:
                raise ValueError(f"token index {token} is beyond the {n_tokens} tokens of the context")
            bias[:, token] = resize_mask(mask.to(device), size).reshape(-1)
        return bias


class AttentionRecorder:
    """Accumulates cross-attention maps of the conditional rows, averaged over heads, layers and calls.

    Every recorded layer's map is resized to ``latent_size`` first. ``factors`` limits recording to some
    layer resolutions (downsampling factors, e.g. ``{2}``); None records all. Without a RegionControl,
    ``cond_rows`` here says which rows are conditional (same convention as ``RegionControl.set_step``);
    with one, the control's rows are used.
    """

    def __init__(
        self,
        latent_size: tuple[int, int],
        factors: Collection[int] | None = None,
        cond_rows: RowSelection = None,
    ) -> None:
        self.latent_size = (int(latent_size[0]), int(latent_size[1]))
        self.factors = None if factors is None else set(factors)
        self.cond_rows = cond_rows
        self.calls = 0
        self._sum: torch.Tensor | None = None

    def wants(self, n_query: int) -> bool:
        return self.factors is None or layer_factor(n_query, self.latent_size) in self.factors

    def add(self, probs: torch.Tensor) -> None:
        """Record attention probabilities [B_cond, heads, N, T] of one layer call."""
        batch, _, n_query, n_tokens = probs.shape
        height, width = layer_size(n_query, self.latent_size)
        maps = probs.detach().float().mean(dim=1).transpose(1, 2).reshape(batch, n_tokens, height, width)
        if (height, width) != self.latent_size:
            maps = F.interpolate(maps, size=self.latent_size, mode="bilinear", align_corners=False)
        if self._sum is None:
            self._sum = torch.zeros_like(maps)
        elif self._sum.shape != maps.shape:
            raise ValueError(
                f"recorded maps changed shape from {tuple(self._sum.shape)} to {tuple(maps.shape)}; "
                "call reset() between runs with different batches or prompts"
            )
        self._sum += maps
        self.calls += 1

    def maps(self, token_indices: Sequence[int] | None = None) -> torch.Tensor:
        """Mean attention [B_cond, len(tokens), h, w] (all tokens when ``token_indices`` is None)."""
        if self._sum is None:
            raise RuntimeError("no cross-attention call was recorded")
        mean = self._sum / self.calls
        return mean if token_indices is None else mean[:, list(token_indices)]

    def reset(self) -> None:
        self.calls = 0
        self._sum = None


# ---------------------------------------------------------------------------------------------------------
# Call parsing: one forward for ldm (x, context, mask), sgm (+ extras) and diffusers (keywords)


@dataclass
class _Call:
    """A parsed attention call: where x, context and mask sit, so the call can be rebuilt with rows cut."""

    args: tuple
    kwargs: dict[str, Any]
    slots: dict[str, int | str]  # role -> positional index or keyword name

    def get(self, role: str) -> Any:
        slot = self.slots.get(role)
        if slot is None:
            return None
        return self.args[slot] if isinstance(slot, int) else self.kwargs[slot]

    def with_values(self, values: dict[str, Any]) -> tuple[tuple, dict[str, Any]]:
        args, kwargs = list(self.args), dict(self.kwargs)
        for role, value in values.items():
            slot = self.slots.get(role)
            if isinstance(slot, int):
                args[slot] = value
            elif slot is not None:
                kwargs[slot] = value
        return tuple(args), kwargs


def _is_neutral(value: Any) -> bool:
    """Extra arguments we can ignore: None, 0 (sgm's crossframe count) or an empty dict."""
    if value is None:
        return True
    if isinstance(value, int) and not isinstance(value, bool):
        return value == 0
    return isinstance(value, dict) and not value


def _parse_call(args: tuple, kwargs: dict[str, Any]) -> _Call | None:
    """None when the call uses something the manual path cannot reproduce (then we delegate)."""
    slots: dict[str, int | str] = {}
    for position, (role, names) in enumerate(
        (("x", _X_NAMES), ("context", _CONTEXT_NAMES), ("mask", _MASK_NAMES))
    ):
        if position < len(args):
            slots[role] = position
        else:
            found = [name for name in names if name in kwargs]
            if found:
                slots[role] = found[0]
    known = {slot for slot in slots.values() if isinstance(slot, str)}
    extras = list(args[3:]) + [value for name, value in kwargs.items() if name not in known]
    if "x" not in slots or not all(_is_neutral(value) for value in extras):
        return None
    return _Call(args, kwargs, slots)


# ---------------------------------------------------------------------------------------------------------
# The manual attention path


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


def _split_heads(tensor: torch.Tensor, heads: int) -> torch.Tensor:
    batch, length, inner = tensor.shape
    return tensor.reshape(batch, length, heads, inner // heads).transpose(1, 2)


def _merge_heads(tensor: torch.Tensor) -> torch.Tensor:
    batch, heads, length, dim = tensor.shape
    return tensor.transpose(1, 2).reshape(batch, length, heads * dim)


def _project_out(module: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """to_out[0] (Linear) then to_out[1] (Dropout); also accepts a bare Linear."""
    to_out = module.to_out
    if isinstance(to_out, (nn.Sequential, nn.ModuleList)):
        for layer in to_out:
            hidden = layer(hidden)
        return hidden
    return to_out(hidden)


def _mask_as_bias(mask: torch.Tensor, rows: torch.Tensor, batch: int) -> torch.Tensor | None:
    """A user attention mask as a [rows|1, heads|1, N|1, T] tensor; None if its layout is unknown.

    Bool masks keep True positions (ldm, SDPA convention); float masks are additive (diffusers).
    """
    if mask.ndim == 2:
        mask = mask[:, None, None, :]
    elif mask.ndim == 3:
        mask = mask[:, None]
    elif mask.ndim != 4:
        return None
    if mask.shape[0] == 1:
        return mask
    if mask.shape[0] != batch:  # e.g. already repeated per head: leave it to the original forward
        return None
    return mask.index_select(0, rows.to(mask.device))


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
    user_mask: torch.Tensor | None = None,
    recorder: AttentionRecorder | None = None,
) -> torch.Tensor:
    """The module's attention computed explicitly (float32 scores) with the region bias added."""
    residual = x
    if getattr(module, "group_norm", None) is not None:
        x = module.group_norm(x.transpose(1, 2)).transpose(1, 2)
    if getattr(module, "norm_cross", None) is not None:
        context = module.norm_encoder_hidden_states(context)
    q = _split_heads(module.to_q(x), module.heads)
    k = _split_heads(module.to_k(context), module.heads)
    v = _split_heads(module.to_v(context), module.heads)
    if getattr(module, "norm_q", None) is not None:
        q = module.norm_q(q)
    if getattr(module, "norm_k", None) is not None:
        k = module.norm_k(k)
    scores = _scores(module, q, k)
    if region_bias is not None:
        scores = _add_region_bias(scores, region_bias, strength)
    if user_mask is not None:
        scores = _apply_user_mask(scores, user_mask)
    probs = scores.softmax(dim=-1)
    del scores
    if recorder is not None:
        recorder.add(probs)
    hidden = _merge_heads(torch.matmul(probs.to(v.dtype), v))
    hidden = _project_out(module, hidden)
    if getattr(module, "residual_connection", False):
        hidden = hidden + residual
    return hidden / getattr(module, "rescale_output_factor", 1.0)


# ---------------------------------------------------------------------------------------------------------
# The replacement forward


def _rows_of(control: RegionControl | None, recorder: AttentionRecorder | None) -> RowSelection:
    """The control's conditional rows win; a recorder alone brings its own."""
    if control is not None:
        return control.cond_rows
    return recorder.cond_rows if recorder is not None else None


def _cut_rows(value: Any, rows: torch.Tensor, batch: int) -> Any:
    """Rows of a batch-major tensor; anything else (None, broadcast masks) passes unchanged."""
    if isinstance(value, torch.Tensor) and value.ndim > 0 and value.shape[0] == batch:
        return value.index_select(0, rows.to(value.device))
    return value


def _is_cross_attention_call(x: Any, context: Any) -> bool:
    """A [B, N, C] query against a tensor context with B or 1 rows."""
    return (
        isinstance(x, torch.Tensor)
        and isinstance(context, torch.Tensor)
        and x.ndim == 3
        and context.ndim == 3
        and context.shape[0] in (1, x.shape[0])
    )


def make_forward(
    module: nn.Module,
    original: Callable[..., Any],
    control: RegionControl | None,
    recorder: AttentionRecorder | None,
) -> Callable[..., Any]:
    """The instance forward: the manual path on conditional rows, ``original`` for everything else."""

    def forward(*args: Any, **kwargs: Any) -> Any:
        call = _parse_call(args, kwargs)
        if call is None:
            return original(*args, **kwargs)
        x, context = call.get("x"), call.get("context")
        if not _is_cross_attention_call(x, context):
            return original(*args, **kwargs)  # self-attention, 4-D input, IP-Adapter tuples
        biased = control is not None and control.has_effect
        recording = recorder is not None and recorder.wants(x.shape[1])
        if not (biased or recording):
            return original(*args, **kwargs)
        cond = row_mask(_rows_of(control, recorder), x.shape[0])
        if not bool(cond.any()):
            return original(*args, **kwargs)
        return _controlled_call(
            module, original, call, cond, control if biased else None, recorder if recording else None
        )

    return forward


def _controlled_call(
    module: nn.Module,
    original: Callable[..., Any],
    call: _Call,
    cond: torch.Tensor,
    control: RegionControl | None,
    recorder: AttentionRecorder | None,
) -> torch.Tensor:
    x, context, mask = call.get("x"), call.get("context"), call.get("mask")
    batch = x.shape[0]
    cond_idx = cond.nonzero().flatten().to(x.device)
    user_mask = None if mask is None else _mask_as_bias(mask, cond_idx, batch)
    if mask is not None and user_mask is None:
        return original(*call.args, **call.kwargs)
    if context.shape[0] == 1 and batch > 1:
        context = context.expand(batch, -1, -1)
    region_bias = None
    if control is not None:
        region_bias = control.bias_for(x.shape[1], context.shape[1], x.device)
    out_cond = manual_attention(
        module,
        x.index_select(0, cond_idx),
        context.index_select(0, cond_idx),
        region_bias=region_bias,
        strength=control.strength_scale if control is not None else 0.0,
        user_mask=user_mask,
        recorder=recorder,
    )
    if bool(cond.all()):
        return out_cond
    rest_idx = (~cond).nonzero().flatten().to(x.device)
    cut = {role: _cut_rows(call.get(role), rest_idx, batch) for role in ("x", "context", "mask")}
    args, kwargs = call.with_values(cut)
    out_rest = original(*args, **kwargs)
    out = out_rest.new_empty((batch, *out_rest.shape[1:]))
    out.index_copy_(0, cond_idx, out_cond.to(out.dtype))
    out.index_copy_(0, rest_idx, out_rest)
    return out


# ---------------------------------------------------------------------------------------------------------
# Installation


def _unique_modules(modules: Iterable[ModuleItem]) -> list[nn.Module]:
    unique: dict[int, nn.Module] = {}
    for item in modules:
        module = item[1] if isinstance(item, tuple) else item
        unique.setdefault(id(module), module)
    return list(unique.values())


def _restore(patched: list[tuple[nn.Module, Any]]) -> None:
    for module, previous in reversed(patched):
        if previous is _MISSING:
            module.__dict__.pop("forward", None)
        else:
            module.forward = previous


@contextlib.contextmanager
def controlled_attention(
    modules: Iterable[ModuleItem],
    control: RegionControl | None = None,
    recorder: AttentionRecorder | None = None,
) -> Iterator[None]:
    """Route the given cross-attention modules through region control / recording inside the block.

    Each module gets an instance ``forward`` that wraps whatever forward it had (so contexts nest:
    the inner one decides while it is active). On exit the previous instance attribute is put back,
    or removed when there was none, even if the body raised.
    """
    targets = _unique_modules(modules)
    for module in targets:
        check_supported(module)
    patched: list[tuple[nn.Module, Any]] = []
    try:
        for module in targets:
            previous = module.__dict__.get("forward", _MISSING)
            module.forward = make_forward(module, module.forward, control, recorder)
            patched.append((module, previous))
        yield
    finally:
        _restore(patched)
