"""Shared cases for the region-control tests: tiny seeded diffusers UNets, a [cond; uncond] batch, a
left-side region bound to one token, and the tolerance between attention code paths.
"""

from __future__ import annotations

import torch
from torch import nn

from lib_guided.regions.attention import RegionControl

LATENT = (8, 12)  # non-square on purpose: the layer size must keep the aspect ratio
TOKEN = 3
SIGMA = 5.0


def build_unet(levels: int, seed: int = 0) -> nn.Module:
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    if levels == 2:
        blocks = {
            "block_out_channels": (32, 64),
            "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
        }
    else:  # cross-attention at latent/1 and latent/2, plus the mid block at latent/4
        blocks = {
            "block_out_channels": (32, 32, 64),
            "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
            "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        }
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        cross_attention_dim=32,
        layers_per_block=1,
        attention_head_dim=8,
        norm_num_groups=8,
        **blocks,
    )
    return unet.eval().requires_grad_(False)


def cross_attention(unet: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, module) for name, module in unet.named_modules() if name.endswith("attn2")]


def eps(unet: nn.Module, inputs: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return unet(inputs[0], 10.0, inputs[1]).sample


def left_mask(weight: float, columns: int = 4) -> torch.Tensor:
    """Left ``columns`` of the latent; 4 of 12 stays aligned with the grid at f = 1, 2 and 4."""
    mask = torch.zeros(LATENT)
    mask[:, :columns] = weight
    return mask


def control(weight: float, sigma: float | None = SIGMA, cond_rows=1) -> RegionControl:
    region = RegionControl({TOKEN: left_mask(weight)}, LATENT)
    region.set_step(sigma, cond_rows)
    return region


def assert_unpatched(modules: list[tuple[str, nn.Module]]) -> None:
    assert all("forward" not in module.__dict__ for _, module in modules)


def path_atol(reference: torch.Tensor) -> float:
    """Tolerance between outputs (of a UNet or one module) whose cross-attention took different code paths.

    SDPA vs the manual float32 path, or the module's own forward on a sub-batch (whose matmuls may get
    other BLAS kernels on another CPU), agree to a few eps32 per layer, carried on to the output by the
    layers after them. 128 eps32 times the output's size; measured at most 1.2e-6 = 10 eps32 * max|eps|
    with the AVX2, SSE4.1 and default kernels (ATEN_CPU_CAPABILITY, ONEDNN_MAX_CPU_ISA,
    MKL_ENABLE_INSTRUCTIONS) on 1 and 2 threads.
    """
    return 128 * torch.finfo(torch.float32).eps * float(reference.abs().max())
