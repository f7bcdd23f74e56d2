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

# "bias": paint with words, a bound token's scores raised inside its region. "masked": the same, and
# outside its region a bound token cannot be attended at all, so each region's queries see their own
# phrase plus the prompt's unbound tokens (and unpainted pixels only the unbound ones). "prompts":
# regional prompting, each region's queries attend to their phrase encoded as a prompt of its own (no
# leak through a causal text encoder's later tokens), blended with the whole prompt's by region weight.
REGION_MODES = ("bias", "masked", "prompts")

_MISSING = object()


# ---------------------------------------------------------------------------------------------------------
# State set by the sampler


class RegionControl:
    """Token bindings (token index -> weighted region mask) and the per-call sampler state.

    ``set_step`` must be called before every model call: it gives sigma and the conditional rows
    (the batch is [cond; uncond] in the WebUI and in ``guided_eps``, so ``cond_rows=n`` is the usual).
    """

    def __init__(
        self,
        token_masks: dict[int, torch.Tensor],
        latent_size: tuple[int, int],
        mode: str = "bias",
        region_contexts: list[tuple[torch.Tensor, torch.Tensor]] = (),
    ) -> None:
        """``region_contexts`` (``prompts`` mode): (weighted [H, W] mask, [1, T, D] context) per region."""
        if mode not in REGION_MODES:
            raise ValueError(f"region mode must be one of {', '.join(REGION_MODES)}, got {mode!r}")
        if mode == "prompts":
            token_masks = {}  # the phrases act through their own contexts, not through prompt tokens
        for token, mask in token_masks.items():
            if mask.ndim != 2:
                raise ValueError(f"mask of token {token}: expected [H, W], got shape {tuple(mask.shape)}")
            if token < 0:
                raise ValueError(f"token index {token} is negative")
        self.token_masks = dict(token_masks)
        self.latent_size = (int(latent_size[0]), int(latent_size[1]))
        self.sigma: float | None = None
        self.cond_rows: RowSelection = None
        self.mode = mode
        self.bias_cache: dict[tuple[int, int, torch.device], torch.Tensor] = {}
        self.block_cache: dict[tuple[int, int, torch.device], torch.Tensor | None] = {}
        # a binding of weight 0 is off: its token is neither raised nor blocked
        self._weighted_tokens = {
            token for token, mask in self.token_masks.items() if bool(mask.detach().abs().amax() > 0)
        }
        self.region_contexts = [(mask, context) for mask, context in region_contexts]
        weighted_regions = any(bool(mask.detach().abs().amax() > 0) for mask, _ in self.region_contexts)
        self._has_weight = bool(self._weighted_tokens) or weighted_regions
        self.blend_cache: dict[tuple[int, torch.device], torch.Tensor] = {}

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

    def block_for(self, n_query: int, n_tokens: int, device: torch.device) -> torch.Tensor | None:
        """``masked`` mode: the [n_query, n_tokens] bool of pairs a query may not attend (a bound token
        seen from outside its region); None in ``bias`` mode (cached)."""
        if self.mode != "masked":
            return None
        key = (n_query, n_tokens, torch.device(device))
        if key not in self.block_cache:
            # outside = no part of the layer cell lies in the region (area resize: partly covered
            # cells keep the token, so a small region never loses its phrase at coarse layers)
            self.block_cache[key] = self.bias_for(n_query, n_tokens, device) <= 0
            bound = self._weighted_tokens
            self.block_cache[key][:, [t for t in range(n_tokens) if t not in bound]] = False
        return self.block_cache[key]

    def blend_for(self, n_query: int, device: torch.device) -> torch.Tensor:
        """``prompts`` mode: [R, n_query, 1] share of each region's context in each query's output,
        the region mask times its weight, capped at 1 and scaled down where regions add up past 1."""
        key = (n_query, torch.device(device))
        if key not in self.blend_cache:
            size = layer_size(n_query, self.latent_size)
            shares = torch.stack(
                [resize_mask(mask.to(device), size).reshape(-1, 1) for mask, _ in self.region_contexts]
            ).clamp(0.0, 1.0)
            total = shares.sum(0, keepdim=True)
            self.blend_cache[key] = shares / total.clamp(min=1.0)
        return self.blend_cache[key]

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
