"""Differentiable decoders for GradOP's stroke-loss gradient, chosen by name.

Each is a callable latent [B,C,h,w] -> image [B,3,H,W] in about [0, 1], the contract of
``model.decode``; only the gradient phase uses them, the final image always comes from the model's VAE.

* ``full``: ``model.decode`` itself (the reference; heavy: 36 backward passes per image by default).
* ``full-checkpointed``: the same decoder with activation checkpointing (same numbers, far less memory).
* ``linear``: a 3x3 linear map latent -> RGB fitted to the model's decoder, upsampled (``linear_decoder``).
* ``linear-anchored``: the linear map anchored on a forward pass of the full decoder at the start of
  each phase and every ``ANCHOR_EVERY`` Adam steps (``anchored_decoder``): exact where it is anchored.
* ``linear-anchored-half``: the same, its anchors decoded from the latent pooled 2x (4x cheaper; the
  blurred stroke loss hardly sees the lost detail) and re-anchored every ``HALF_ANCHOR_EVERY`` steps.
* ``linear-local``: the linear map refitted around the first phase's latent from one probe decode and
  kept, each phase anchored on a full decode (``local_refit``): the VAE's local slope, four forward
  passes per image at K 3.
* ``tiny``: a TAESD-like small decoder, when the caller has one.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lib_guided.errors import GuidedInputError
from lib_guided.gradop.decoders.anchored import AnchoredLinearDecoder
from lib_guided.gradop.decoders.checkpointed import (
    CheckpointedDecoder,
    autocast_context,
    checkpointed_diffusers_decoder,
    diffusers_vae_stages,
)
from lib_guided.gradop.decoders.linear import LinearLatentDecoder, fit_linear_decoder, typical_fit_latents
from lib_guided.gradop.decoders.linear_cache import LinearDecoderCache
from lib_guided.gradop.decoders.local_refit import LocallyRefittedDecoder
from lib_guided.protocol import Decoder

__all__ = [
    "DECODERS",
    "AnchoredLinearDecoder",
    "AutocastDecoder",
    "CheckpointedDecoder",
    "LinearDecoderCache",
    "LinearLatentDecoder",
    "LocallyRefittedDecoder",
    "TinyAutoencoderDecoder",
    "checkpointed_diffusers_decoder",
    "diffusers_vae_stages",
    "fit_linear_decoder",
    "fit_model_linear_decoder",
    "make_gradient_decoder",
    "typical_fit_latents",
]

DECODERS = (
    "full",
    "full-checkpointed",
    "linear",
    "linear-anchored",
    "linear-anchored-half",
    "linear-local",
    "tiny",
)
# Adam steps between re-anchorings: 12 steps -> 2 full forward passes per phase. Every 3, 4 and 6 steps
# gave the same lab quality (stroke MSE within 6 %, FD within 2 % of each other, quick plan).
ANCHOR_EVERY = 6
# The pooled anchors are 4x cheaper, so they can be renewed more often: every 4 steps (9 per image at
# K 3 x N 12) keeps the stroke MSE within 5 % of the full VAE's on both lab plans (quick +1.7 %, full
# +4.1 %; every 6: +1.2 % / +5.7 %; every 3: +4.2 % / +4.3 %; README, issue 11).
HALF_ANCHOR_EVERY = 4


class AutocastDecoder:
    """Any decoder run under ``torch.autocast`` (for half-precision models); output in the latent's dtype."""

    def __init__(self, decode: Decoder, dtype: torch.dtype | None) -> None:
        self.decode, self.dtype = decode, dtype

    def __call__(self, latent: torch.Tensor) -> torch.Tensor:
        with autocast_context(latent.device, self.dtype):
            image = self.decode(latent)
        return image.to(device=latent.device, dtype=latent.dtype)


class TinyAutoencoderDecoder:
    """Adapter for a TAESD-like decoder: ``decode(latent * input_scale)`` mapped to [0, 1].

    ``decode`` may return a tensor, a tuple whose first item is the image, or an object with ``.sample``
    (diffusers ``AutoencoderTiny.decode``). ``output_range`` is what it returns: (-1, 1) for diffusers'
    AutoencoderTiny, (0, 1) for the original TAESD decoder. TAESD takes the SD latent as the sampler
    holds it (already multiplied by the VAE scaling factor), hence ``input_scale`` 1 by default.
    """

    def __init__(
        self,
        decode: Callable[[torch.Tensor], object],
        input_scale: float = 1.0,
        output_range: tuple[float, float] = (-1.0, 1.0),
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        low, high = output_range
        if not high > low:
            raise ValueError(f"output_range: need low < high, got {output_range}")
        self.decode, self.input_scale = decode, float(input_scale)
        self.low, self.high = float(low), float(high)
        self.autocast_dtype = autocast_dtype

    @classmethod
    def from_diffusers(cls, tiny_vae: torch.nn.Module, **kwargs) -> TinyAutoencoderDecoder:
        """Wrap a diffusers ``AutoencoderTiny`` (its decode returns images in [-1, 1])."""
        return cls(tiny_vae.decode, output_range=(-1.0, 1.0), **kwargs)

    def __call__(self, latent: torch.Tensor) -> torch.Tensor:
        with autocast_context(latent.device, self.autocast_dtype):
            out = self.decode(latent * self.input_scale)
        image = getattr(out, "sample", out)
        if isinstance(image, (tuple, list)):
            image = image[0]
        return (image.to(device=latent.device, dtype=latent.dtype) - self.low) / (self.high - self.low)


def fit_model_linear_decoder(
    model, count: int = 8, latent_size: tuple[int, int] = (32, 32), seed: int = 0, kernel_size: int = 3
) -> LinearLatentDecoder:
    """Fit the linear decoder to ``model.decode`` on :func:`typical_fit_latents` (``count`` decodes)."""
    latents = typical_fit_latents(model, count, latent_size, seed)
    return fit_linear_decoder(model.decode, latents, int(model.vae_scale_factor), kernel_size=kernel_size)


def make_gradient_decoder(
    name: str,
    model,
    cache: LinearDecoderCache | None = None,
    *,
    cache_key: str | None = None,
    tiny_decoder: Decoder | None = None,
    autocast_dtype: torch.dtype | None = None,
    fit_latent_size: tuple[int, int] = (32, 32),
) -> Decoder:
    """The decoder GradOP differentiates through, by name (one of :data:`DECODERS`).

    ``linear`` is fitted on first use and kept in ``cache`` under ``cache_key`` (e.g. the checkpoint's
    hash; no key: fitted every call). ``tiny`` uses ``tiny_decoder`` or the model's ``tiny_decoder``
    attribute. ``autocast_dtype`` runs the full decoders under ``torch.autocast``.
    """
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else name
    full = model.decode if autocast_dtype is None else AutocastDecoder(model.decode, autocast_dtype)
    if key == "full":
        return full
    if key == "full-checkpointed":
        vae = getattr(model, "vae", None)
        try:
            return checkpointed_diffusers_decoder(vae, model.scaling_factor, autocast_dtype)
        except (TypeError, AttributeError):
            raise GuidedInputError(
                "decoder", "'full-checkpointed' needs a model with a diffusers AutoencoderKL (model.vae)"
            ) from None
    if key in ("linear", "linear-anchored", "linear-anchored-half", "linear-local"):
        cache = cache if cache is not None else LinearDecoderCache()
        linear = cache.get_or_fit(
            cache_key, lambda: fit_model_linear_decoder(model, latent_size=fit_latent_size)
        )
        if key == "linear":
            return linear
        if key == "linear-local":  # fresh per call: it holds the phase's refit
            return LocallyRefittedDecoder(full, linear)
        # fresh per call: it holds the anchor
        if key == "linear-anchored-half":
            return AnchoredLinearDecoder(full, linear, HALF_ANCHOR_EVERY, anchor_downscale=2)
        return AnchoredLinearDecoder(full, linear, ANCHOR_EVERY)
    if key == "tiny":
        tiny = tiny_decoder if tiny_decoder is not None else getattr(model, "tiny_decoder", None)
        if tiny is None:
            raise GuidedInputError("decoder", "'tiny' needs a TAESD-like decoder, and none is loaded")
        return tiny
    raise GuidedInputError("decoder", f"unknown decoder {name!r}; choose one of: {', '.join(DECODERS)}")
