"""Region control in cross-attention, on real (tiny, seeded) diffusers UNets and an ldm-style module."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from lib_guided.regions.attention import (
    AttentionRecorder,
    RegionControl,
    controlled_attention,
    layer_size,
    row_mask,
)

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


# ---------------------------------------------------------------------------------------------------------
# 1. identity


@pytest.mark.parametrize(
    "region",
    [
        None,
        RegionControl({}, LATENT),
        control(0.0),  # masks all zero
        control(2.0, sigma=None),  # sampler never set sigma
        control(2.0, sigma=0.0),  # log(1 + 0) = 0
        control(2.0, cond_rows=0),  # no conditional rows
    ],
    ids=["no-control", "no-masks", "zero-weight", "no-sigma", "sigma-0", "no-cond-rows"],
)
def test_inactive_control_is_bit_identical(unet3, inputs, region):
    expected = eps(unet3, inputs)
    with controlled_attention(cross_attention(unet3), region):
        assert torch.equal(eps(unet3, inputs), expected)


@pytest.mark.parametrize("cond_rows", [None, 1])
def test_manual_path_with_zero_weight_matches_original(unet3, inputs, cond_rows):
    expected = eps(unet3, inputs)
    recorder = AttentionRecorder(LATENT)
    with controlled_attention(cross_attention(unet3), control(0.0, cond_rows=cond_rows), recorder):
        got = eps(unet3, inputs)
    assert recorder.calls == len(cross_attention(unet3))  # the manual path really ran
    torch.testing.assert_close(got, expected, atol=path_atol(expected), rtol=0)


# ---------------------------------------------------------------------------------------------------------
# 2. restore


def test_restores_after_normal_exit(unet2, inputs):
    modules = cross_attention(unet2)
    expected = eps(unet2, inputs)
    with controlled_attention(modules, control(2.0)):
        assert all("forward" in module.__dict__ for _, module in modules)
        assert not torch.equal(eps(unet2, inputs), expected)
    assert_unpatched(modules)
    assert torch.equal(eps(unet2, inputs), expected)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_restores_when_the_body_raises(unet2, inputs, error):
    modules = cross_attention(unet2)
    expected = eps(unet2, inputs)
    with pytest.raises(error), controlled_attention(modules, control(2.0)):
        eps(unet2, inputs)
        raise error("stop")
    assert_unpatched(modules)
    assert torch.equal(eps(unet2, inputs), expected)


def test_nested_and_duplicate_modules_restore(unet2, inputs):
    modules = cross_attention(unet2)
    expected = eps(unet2, inputs)
    outer_recorder = AttentionRecorder(LATENT, cond_rows=1)
    with controlled_attention(modules + modules, recorder=outer_recorder):
        outer_forwards = [module.__dict__["forward"] for _, module in modules]
        with controlled_attention([module for _, module in modules], control(2.0)):
            assert not torch.equal(eps(unet2, inputs), expected)
        assert [module.__dict__["forward"] for _, module in modules] == outer_forwards
        torch.testing.assert_close(eps(unet2, inputs), expected, atol=path_atol(expected), rtol=0)
    assert_unpatched(modules)
    assert torch.equal(eps(unet2, inputs), expected)


def test_keeps_a_forward_set_on_the_instance_before_us(unet2, inputs):
    name, module = cross_attention(unet2)[0]
    calls = []

    def someone_elses_forward(*args, **kwargs):
        calls.append(name)
        return type(module).forward(module, *args, **kwargs)

    module.forward = someone_elses_forward
    try:
        with controlled_attention([(name, module)], control(0.0)):
            eps(unet2, inputs)  # inactive: delegates to the previous instance forward
        assert module.__dict__["forward"] is someone_elses_forward
        assert calls == [name]
    finally:
        del module.forward


# ---------------------------------------------------------------------------------------------------------
# 3. effect


def token_mass(recorder: AttentionRecorder) -> tuple[float, float]:
    """Mean attention of the bound token inside and outside its region (first conditional row)."""
    maps = recorder.maps([TOKEN])[0, 0]
    inside = left_mask(1.0).bool()
    return maps[inside].mean().item(), maps[~inside].mean().item()


def test_bias_moves_attention_into_the_region_in_the_biased_layer(unet3, inputs):
    first = cross_attention(unet3)[:1]  # only this layer: its input is the same with and without control
    plain, biased = AttentionRecorder(LATENT, cond_rows=1), AttentionRecorder(LATENT)
    with controlled_attention(first, recorder=plain):
        eps(unet3, inputs)
    with controlled_attention(first, control(2.0), biased):
        eps(unet3, inputs)
    inside_plain, outside_plain = token_mass(plain)
    inside_biased, outside_biased = token_mass(biased)
    assert inside_biased > 3 * inside_plain
    assert outside_biased == pytest.approx(outside_plain, abs=1e-6)  # zero bias: the same softmax rows


def test_bias_moves_attention_into_the_region_across_the_unet(unet3, inputs):
    plain, biased = (
        AttentionRecorder(LATENT, factors={1}, cond_rows=1),
        AttentionRecorder(LATENT, factors={1}),
    )
    with controlled_attention(cross_attention(unet3), recorder=plain):
        eps(unet3, inputs)
    with controlled_attention(cross_attention(unet3), control(2.0), biased):
        eps(unet3, inputs)
    inside_plain, outside_plain = token_mass(plain)
    inside_biased, outside_biased = token_mass(biased)
    assert inside_biased > 3 * inside_plain
    assert outside_biased <= outside_plain * 1.05  # only indirect changes through earlier layers


def test_unconditional_rows_are_untouched(unet3, inputs):
    expected = eps(unet3, inputs)
    with controlled_attention(cross_attention(unet3), control(2.0, cond_rows=1)):
        got = eps(unet3, inputs)
    # the same code path for row 1: the module's own forward on the unconditional sub-batch (recording only
    # changes row 0's path, and rows never mix), so bit-identical: no bias reaches the unconditional row
    with controlled_attention(cross_attention(unet3), recorder=AttentionRecorder(LATENT, cond_rows=1)):
        unbiased = eps(unet3, inputs)
    assert torch.equal(got[1], unbiased[1])
    # against the unpatched run, whose attention saw the whole batch, only up to kernel rounding
    torch.testing.assert_close(got[1], expected[1], atol=path_atol(expected), rtol=0)
    assert (got[0] - expected[0]).abs().max() > 1e-2


@pytest.mark.parametrize("cond_rows", [slice(0, 1), torch.tensor([True, False]), torch.tensor([0])])
def test_cond_rows_forms_agree(unet2, inputs, cond_rows):
    with controlled_attention(cross_attention(unet2), control(2.0, cond_rows=1)):
        expected = eps(unet2, inputs)
    with controlled_attention(cross_attention(unet2), control(2.0, cond_rows=cond_rows)):
        assert torch.equal(eps(unet2, inputs), expected)


def test_row_mask_conventions():
    assert row_mask(None, 3).tolist() == [True, True, True]
    assert row_mask(2, 3).tolist() == [True, True, False]
    assert row_mask(slice(1, None), 3).tolist() == [False, True, True]
    assert row_mask(torch.tensor([False, True, False]), 3).tolist() == [False, True, False]
    assert row_mask(torch.tensor([2]), 3).tolist() == [False, False, True]
    with pytest.raises(ValueError, match="bool mask"):
        row_mask(torch.tensor([True, False]), 3)


# ---------------------------------------------------------------------------------------------------------
# 4. per-resolution masks, cached


def test_masks_are_resized_per_layer_resolution_and_cached(unet3, inputs):
    region = control(2.0)
    with controlled_attention(cross_attention(unet3), region):
        eps(unet3, inputs)
        first = dict(region.bias_cache)
        eps(unet3, inputs)
    assert sorted(n for n, _, _ in region.bias_cache) == [6, 24, 96]  # 8x12, 4x6, 2x3
    assert all(region.bias_cache[key] is bias for key, bias in first.items())  # built once
    for (n_query, n_tokens, _), bias in region.bias_cache.items():
        height, width = layer_size(n_query, LATENT)
        assert bias.shape == (n_query, n_tokens) == (height * width, 7)
        grid = bias[:, TOKEN].reshape(height, width)
        expected = torch.zeros(height, width)
        expected[:, : width // 3] = 2.0  # the left third, sharp at every resolution
        assert torch.equal(grid, expected)
        assert not bias[:, [t for t in range(n_tokens) if t != TOKEN]].any()


def test_layer_size_keeps_the_aspect_ratio_and_rounds_up():
    assert layer_size(96, (8, 12)) == (8, 12)
    assert layer_size(24, (8, 12)) == (4, 6)
    assert layer_size(6, (8, 12)) == (2, 3)
    assert layer_size(25, (9, 9)) == (5, 5)
    assert layer_size(9, (9, 9)) == (3, 3)
    assert layer_size(1, (8, 12)) == (1, 1)


def test_recorder_maps_shape_and_layer_filter(unet3, inputs):
    every, full_only = AttentionRecorder(LATENT, cond_rows=1), AttentionRecorder(LATENT, factors={1})
    with controlled_attention(cross_attention(unet3), control(2.0), every):
        eps(unet3, inputs)
    with controlled_attention(cross_attention(unet3), control(2.0), full_only):
        eps(unet3, inputs)
    assert every.calls == 7 and full_only.calls == 3  # 7 attn2 layers, 3 of them at full resolution
    maps = every.maps([TOKEN, 0])
    assert maps.shape == (1, 2, *LATENT)
    torch.testing.assert_close(every.maps().sum(dim=1), torch.ones(1, *LATENT))  # softmax over tokens
    every.reset()
    with pytest.raises(RuntimeError, match="no cross-attention"):
        every.maps([TOKEN])


# ---------------------------------------------------------------------------------------------------------
# 5. errors


def test_unmatched_query_length_is_a_clear_error(unet2):
    with pytest.raises(ValueError, match="50 query positions matches no downsampling"):
        layer_size(50, LATENT)
    square = (torch.randn(2, 4, 8, 8), torch.randn(2, 7, 32))  # 64 positions: not a level of 8x12
    with (
        pytest.raises(ValueError, match="64 query positions"),
        controlled_attention(cross_attention(unet2), control(2.0)),
    ):
        eps(unet2, square)
    assert_unpatched(cross_attention(unet2))


def test_rejects_modules_that_are_not_cross_attention():
    with pytest.raises(TypeError, match="to_q"), controlled_attention([nn.Linear(2, 2)]):
        pass


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

