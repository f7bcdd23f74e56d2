"""The replacement forward across call signatures: an ldm-style module checked against the formula,
and diffusers calls it must leave to the module's own forward.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lib_guided.regions.attention import RegionControl, controlled_attention
from lib_guided.regions.attention_recorder import AttentionRecorder
from tests.regions.attention_cases import (
    LATENT,
    SIGMA,
    control,
    cross_attention,
    path_atol,
)

# ---------------------------------------------------------------------------------------------------------
# ldm-style module: positional (x, context, mask) signature, checked against the formula


class LdmCrossAttention(nn.Module):
    """The ldm ``CrossAttention`` layout, written out here."""

    def __init__(self, query_dim: int = 16, context_dim: int = 16, heads: int = 2, dim_head: int = 8):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, dim_head**-0.5
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_k = nn.Linear(context_dim, inner, bias=False)
        self.to_v = nn.Linear(context_dim, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, query_dim), nn.Dropout(0.0))

    def forward(self, x, context=None, mask=None):
        return reference_attention(self, x, x if context is None else context, mask=mask)


def reference_attention(module, x, context, mask=None, bias=None, weight_times_strength=0.0):
    batch, length, _ = x.shape
    q, k, v = (
        t.reshape(batch, t.shape[1], module.heads, -1).transpose(1, 2)
        for t in (module.to_q(x), module.to_k(context), module.to_v(context))
    )
    scores = q @ k.transpose(-1, -2) * module.scale
    if bias is not None:
        peak = scores.amax(dim=(-2, -1), keepdim=True)
        scores = scores + weight_times_strength * peak * bias
    if mask is not None:
        scores = scores.masked_fill(~mask[:, None, None, :], -torch.finfo(scores.dtype).max)
    out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(batch, length, -1)
    return module.to_out(out)


@pytest.fixture(scope="module")
def ldm_case():
    torch.manual_seed(3)
    module = LdmCrossAttention().eval()
    x = torch.randn(3, 6, 16)  # latent (2, 3): 6 positions
    context = torch.randn(3, 5, 16)
    return module, x, context


def test_ldm_signature_applies_the_formula_on_conditional_rows(ldm_case):
    module, x, context = ldm_case
    mask = torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.0, 0.0]])
    region = RegionControl({2: 1.5 * mask}, (2, 3))
    region.set_step(SIGMA, 2)  # rows 0, 1 conditional; row 2 unconditional
    bias = torch.zeros(6, 5)
    bias[:, 2] = 1.5 * mask.reshape(-1)
    with torch.no_grad(), controlled_attention([module], region):
        got = module(x, context)
        got_keywords = module(x=x, context=context)
    with torch.no_grad():
        expected = reference_attention(
            module, x[:2], context[:2], bias=bias, weight_times_strength=math.log1p(SIGMA)
        )
        plain = module(x, context)
        alone = module(x[2:], context[2:])  # the unconditional row through the module's own forward
    torch.testing.assert_close(got[:2], expected, atol=1e-5, rtol=1e-5)
    # row 2 is delegated on its own: bit-identical to that same call, and to the whole-batch call up to
    # the rounding of batch-size-dependent BLAS kernels
    assert torch.equal(got[2], alone[0])
    torch.testing.assert_close(got[2], plain[2], atol=path_atol(plain), rtol=0)
    assert torch.equal(got_keywords, got)


def test_ldm_signature_masks_and_self_attention(ldm_case):
    module, x, context = ldm_case
    keep = torch.tensor([[True, True, False, True, True]] * 3)
    region = RegionControl({1: torch.ones(2, 3)}, (2, 3))
    region.set_step(SIGMA, None)
    bias = torch.zeros(6, 5)
    bias[:, 1] = 1.0
    with torch.no_grad():
        plain_self = module(x)
        expected = reference_attention(module, x, context, keep, bias, math.log1p(SIGMA))
        with controlled_attention([module], region, AttentionRecorder((2, 3))):
            assert torch.equal(module(x), plain_self)  # self-attention call: delegated
            got = module(x, context, keep)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_diffusers_four_d_input_is_delegated(unet2):
    _, module = cross_attention(unet2)[0]
    hidden = torch.randn(2, 32, *LATENT)
    context = torch.randn(2, 7, 32)
    with torch.no_grad():
        expected = module(hidden, encoder_hidden_states=context)
        with controlled_attention([module], control(2.0)):
            assert torch.equal(module(hidden, encoder_hidden_states=context), expected)
