"""Fixtures of the region-control tests: the tiny UNets (2 and 3 levels) and their input batch."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from tests.regions.attention_cases import LATENT, build_unet


@pytest.fixture(scope="module")
def unet2() -> nn.Module:
    return build_unet(2)


@pytest.fixture(scope="module")
def unet3() -> nn.Module:
    return build_unet(3)


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, torch.Tensor]:
    """Batch [cond; uncond]: the same latent twice, two different contexts."""
    gen = torch.Generator().manual_seed(1)
    latent = torch.randn(1, 4, *LATENT, generator=gen)
    context = torch.randn(2, 7, 32, generator=gen)
    return torch.cat([latent, latent]), context
