"""The full VAE decoder with activation checkpointing, for GradOP's gradient at large sizes.

A decoder is run as a list of sequential stages (one ResNet block, one upsampler, ...). With gradients
on, each stage runs under non-reentrant ``torch.utils.checkpoint``: the forward keeps only the stage
boundaries and the backward recomputes one stage at a time, so activation memory is about one stage's
worth instead of the whole decoder's (the full-resolution blocks dominate both). It costs one extra
decoder forward per gradient. The output and gradient are the plain decoder's, exactly.

Non-reentrant checkpointing also keeps ``torch.autograd.grad(loss, [latent])`` from ever writing
``.grad`` on the decoder's weights, which the reentrant variant would do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

import torch
from torch.utils.checkpoint import checkpoint

Stage = Callable[[torch.Tensor], torch.Tensor]


class CheckpointedDecoder:
    """``post(stage_n(...stage_1(pre(latent))))`` with each stage checkpointed when gradients flow."""

    def __init__(
        self,
        stages: Sequence[Stage],
        pre: Stage | None = None,
        post: Stage | None = None,
        autocast_dtype: torch.dtype | None = None,
    ) -> None:
        if not stages:
            raise ValueError("stages: need at least one stage")
        self.stages, self.pre, self.post = list(stages), pre, post
        self.autocast_dtype = autocast_dtype

    def __call__(self, latent: torch.Tensor) -> torch.Tensor:
        with autocast_context(latent.device, self.autocast_dtype):
            x = self.pre(latent) if self.pre is not None else latent
            checkpointing = torch.is_grad_enabled() and x.requires_grad
            for stage in self.stages:
                # the decoder has no randomness, so the RNG state need not be saved for the recompute
                x = (
                    checkpoint(stage, x, use_reentrant=False, preserve_rng_state=False)
                    if checkpointing
                    else stage(x)
                )
            x = x.to(device=latent.device, dtype=latent.dtype)  # post-processing in the caller's dtype
            return self.post(x) if self.post is not None else x


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``dtype`` on ``device``'s type, or a no-op when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()  # not autocast(enabled=False): that would switch off an outer one
    return torch.autocast(device_type=device.type, dtype=dtype)


def _resnet_stage(resnet: torch.nn.Module) -> Stage:
    def run(x: torch.Tensor) -> torch.Tensor:
        return resnet(x, None)

    return run


def _module_stage(module: torch.nn.Module) -> Stage:
    def run(x: torch.Tensor) -> torch.Tensor:
        return module(x)

    return run


def diffusers_vae_stages(vae: torch.nn.Module) -> list[Stage]:
    """The stages of a diffusers ``AutoencoderKL`` decode (``post_quant_conv`` through ``conv_out``).

    Same order as ``AutoencoderKL._decode`` / ``Decoder.forward`` without tiling, slicing or latent
    embeddings (the SD 1.x / 2.x / XL VAEs use none of them).
    """
    decoder = getattr(vae, "decoder", None)
    needed = ("conv_in", "mid_block", "up_blocks", "conv_norm_out", "conv_act", "conv_out")
    if decoder is None or not all(hasattr(decoder, name) for name in needed):
        raise TypeError(
            "expected a diffusers AutoencoderKL (vae.decoder with conv_in, mid_block, up_blocks, ...)"
        )
    head = [m for m in (getattr(vae, "post_quant_conv", None), decoder.conv_in) if m is not None]
    # the two 1x1/3x3 convs at latent resolution are cheap: one stage
    stages: list[Stage] = [_module_stage(torch.nn.Sequential(*head))]
    mid = decoder.mid_block
    stages.append(_resnet_stage(mid.resnets[0]))
    for attention, resnet in zip(mid.attentions, mid.resnets[1:], strict=True):
        if attention is not None:
            stages.append(_module_stage(attention))
        stages.append(_resnet_stage(resnet))
    for block in decoder.up_blocks:
        stages.extend(_resnet_stage(resnet) for resnet in block.resnets)
        stages.extend(_module_stage(up) for up in (block.upsamplers or ()))
    stages.append(
        _module_stage(torch.nn.Sequential(decoder.conv_norm_out, decoder.conv_act, decoder.conv_out))
    )
    return stages


def checkpointed_diffusers_decoder(
    vae: torch.nn.Module, scaling_factor: float, autocast_dtype: torch.dtype | None = None
) -> CheckpointedDecoder:
    """``DiffusersModel.decode`` (latent / scaling factor, image mapped to [0, 1]) with checkpointing."""
    weight = next(vae.parameters())

    def pre(latent: torch.Tensor) -> torch.Tensor:
        return latent.to(device=weight.device, dtype=weight.dtype) / scaling_factor

    def post(image: torch.Tensor) -> torch.Tensor:
        return (image + 1.0) / 2.0

    return CheckpointedDecoder(diffusers_vae_stages(vae), pre, post, autocast_dtype)
