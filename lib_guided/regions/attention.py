"""Region control in cross-attention ("paint with words", eDiff-I form): the control object and the
context manager that installs it.

For every token k bound to a painted region, on the conditional batch rows of every cross-attention
layer the scores become ``QK^T/sqrt(d) + log(1 + sigma) * max(QK^T/sqrt(d)) * M_k`` (M_k already holds
the region's weight), with the max taken per batch row and head. Unconditional rows, unbound tokens
and self-attention are left to the module's own forward.

:class:`RegionControl` holds the token masks and the sampler's per-call state; :func:`controlled_attention`
installs the replacement forward (:mod:`lib_guided.regions.attention_forward`) per module instance and
removes it again when the context exits. The maths is in :mod:`lib_guided.regions.manual_attention`,
map recording in :mod:`lib_guided.regions.attention_recorder`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from lib_guided.regions.attention_forward import make_forward
from lib_guided.regions.attention_recorder import AttentionRecorder
from lib_guided.regions.batch_rows import RowSelection
from lib_guided.regions.layer_grid import layer_size, resize_mask
from lib_guided.regions.manual_attention import check_supported

ModuleItem = nn.Module | tuple[str, nn.Module]

_MISSING = object()


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
def patched_forwards(
    modules: Iterable[ModuleItem], make: Callable[[nn.Module, Callable[..., Any]], Callable[..., Any]]
) -> Iterator[None]:
    """Give each attention module (once, however often listed) the instance ``forward``
    ``make(module, its current forward)`` inside the block.

    The new forward wraps whatever forward the module had, so contexts nest (the inner one decides while
    it is active). On exit the previous instance attribute is put back, or removed when there was none,
    even if the body raised. Region control and AIDI's attention injection both install through this.
    """
    targets = _unique_modules(modules)
    for module in targets:
        check_supported(module)
    patched: list[tuple[nn.Module, Any]] = []
    try:
        for module in targets:
            previous = module.__dict__.get("forward", _MISSING)
            module.forward = make(module, module.forward)
            patched.append((module, previous))
        yield
    finally:
        _restore(patched)


def controlled_attention(
    modules: Iterable[ModuleItem],
    control: RegionControl | None = None,
    recorder: AttentionRecorder | None = None,
) -> contextlib.AbstractContextManager:
    """Route the given cross-attention modules through region control / recording inside the block."""
    return patched_forwards(
        modules, lambda module, original: make_forward(module, original, control, recorder)
    )
