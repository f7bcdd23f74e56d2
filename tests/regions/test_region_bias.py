"""The region bias on tiny diffusers UNets: attention moves into the bound region, only on the
conditional rows, however those rows are given.
"""

from __future__ import annotations

import pytest
import torch

from lib_guided.regions.attention import RegionControl, controlled_attention
from lib_guided.regions.attention_recorder import AttentionRecorder
from lib_guided.regions.batch_rows import row_mask
from tests.regions.attention_cases import (
    LATENT,
    SIGMA,
    TOKEN,
    control,
    cross_attention,
    eps,
    left_mask,
    path_atol,
)

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


def masked_control(weight: float, extra: dict | None = None) -> RegionControl:
    region = RegionControl({TOKEN: left_mask(weight), **(extra or {})}, LATENT, mode="masked")
    region.set_step(SIGMA, 1)
    return region


def test_masked_mode_shuts_the_token_out_of_the_rest_of_the_image(unet3, inputs):
    first = cross_attention(unet3)[:1]  # only this layer: its input is the same in both runs
    biased, masked = AttentionRecorder(LATENT), AttentionRecorder(LATENT)
    with controlled_attention(first, control(2.0), biased):
        eps(unet3, inputs)
    with controlled_attention(first, masked_control(2.0), masked):
        eps(unet3, inputs)
    inside_biased, outside_biased = token_mass(biased)
    inside_masked, outside_masked = token_mass(masked)
    assert outside_biased > 1e-3  # without the mask the token is seen everywhere
    assert outside_masked == 0.0
    assert inside_masked == pytest.approx(inside_biased, abs=1e-7)  # inside: the bias mode's rows


def test_masked_mode_leaves_unbound_and_weight_zero_tokens_visible():
    region = masked_control(1.0, extra={TOKEN + 1: left_mask(0.0)})  # a binding of weight 0 is off
    block = region.block_for(LATENT[0] * LATENT[1], 8, torch.device("cpu"))
    outside = ~left_mask(1.0).bool().reshape(-1)
    assert block[:, TOKEN].tolist() == outside.tolist()
    assert not block[:, [t for t in range(8) if t != TOKEN]].any()
    coarse = region.block_for(2 * 3, 8, torch.device("cpu"))  # f 4: the region covers the left cell column
    assert coarse[:, TOKEN].tolist() == [False, True, True, False, True, True]


def test_bias_mode_blocks_nothing_and_unknown_modes_are_refused():
    assert control(1.0).block_for(LATENT[0] * LATENT[1], 8, torch.device("cpu")) is None
    with pytest.raises(ValueError, match="region mode"):
        RegionControl({TOKEN: left_mask(1.0)}, LATENT, mode="hard")


def test_masked_mode_at_weight_zero_is_bit_identical_to_no_control(unet3, inputs):
    expected = eps(unet3, inputs)
    with controlled_attention(cross_attention(unet3), masked_control(0.0)):
        assert torch.equal(eps(unet3, inputs), expected)


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
