"""The replacement forward of a cross-attention module under region control or recording.

One forward serves the ldm (x, context, mask), sgm (+ extras), Forge (+ value, transformer_options) and
diffusers (keywords) call signatures:
it parses the call, runs the manual attention path on the conditional rows and hands everything else
(unconditional rows, self-attention, calls it cannot reproduce) to the module's original forward.
:func:`lib_guided.regions.attention.controlled_attention` installs it per module instance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from lib_guided.regions.attention_recorder import AttentionRecorder
from lib_guided.regions.batch_rows import RowSelection, row_mask
from lib_guided.regions.manual_attention import manual_attention

if TYPE_CHECKING:  # only for annotations: attention.py imports this module
    from lib_guided.regions.attention import RegionControl

_X_NAMES = ("x", "hidden_states")
_CONTEXT_NAMES = ("context", "encoder_hidden_states")
_MASK_NAMES = ("mask", "attention_mask")
# keywords that describe the call and change nothing in the attention itself (Forge: block indices,
# cond marks, sigmas, other extensions' patches, which run outside the module's forward)
_METADATA_NAMES = ("transformer_options",)


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


def parse_call(args: tuple, kwargs: dict[str, Any]) -> _Call | None:
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
    extras = list(args[3:]) + [
        value for name, value in kwargs.items() if name not in known and name not in _METADATA_NAMES
    ]
    if "x" not in slots or not all(_is_neutral(value) for value in extras):
        return None
    return _Call(args, kwargs, slots)


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
        call = parse_call(args, kwargs)
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
    if control is not None and control.mode == "prompts":
        out_cond = _regional_prompts(
            module,
            x.index_select(0, cond_idx),
            context.index_select(0, cond_idx),
            control,
            user_mask,
            recorder,
        )
        return _merge_rows(original, call, cond, cond_idx, batch, out_cond)
    region_bias = region_block = None
    if control is not None:
        region_bias = control.bias_for(x.shape[1], context.shape[1], x.device)
        region_block = control.block_for(x.shape[1], context.shape[1], x.device)
    out_cond = manual_attention(
        module,
        x.index_select(0, cond_idx),
        context.index_select(0, cond_idx),
        region_bias=region_bias,
        strength=control.strength_scale if control is not None else 0.0,
        region_block=region_block,
        user_mask=user_mask,
        recorder=recorder,
    )
    return _merge_rows(original, call, cond, cond_idx, batch, out_cond)


def _merge_rows(
    original: Callable[..., Any],
    call: _Call,
    cond: torch.Tensor,
    cond_idx: torch.Tensor,
    batch: int,
    out_cond: torch.Tensor,
) -> torch.Tensor:
    """The conditional rows' output put together with the module's own forward on the other rows."""
    if bool(cond.all()):
        return out_cond
    rest_idx = (~cond).nonzero().flatten().to(cond_idx.device)
    cut = {role: _cut_rows(call.get(role), rest_idx, batch) for role in ("x", "context", "mask")}
    args, kwargs = call.with_values(cut)
    out_rest = original(*args, **kwargs)
    out = out_rest.new_empty((batch, *out_rest.shape[1:]))
    out.index_copy_(0, cond_idx, out_cond.to(out.dtype))
    out.index_copy_(0, rest_idx, out_rest)
    return out


def _regional_prompts(
    module: nn.Module,
    x: torch.Tensor,
    context: torch.Tensor,
    control: RegionControl,
    user_mask: torch.Tensor | None,
    recorder: AttentionRecorder | None,
) -> torch.Tensor:
    """``prompts`` mode on the conditional rows: the whole prompt's attention output, with each region's
    share of it replaced by the attention to that region's own context."""
    out = manual_attention(module, x, context, user_mask=user_mask, recorder=recorder)
    shares = control.blend_for(x.shape[1], x.device).to(out.dtype)
    out = out * (1.0 - shares.sum(0))
    for share, (_, region_context) in zip(shares, control.region_contexts, strict=True):
        region_context = region_context.to(device=x.device, dtype=context.dtype).expand(x.shape[0], -1, -1)
        out = out + share * manual_attention(module, x, region_context)
    return out
