"""controlled_attention on tiny diffusers UNets: inactive control changes nothing, forwards are restored
on every exit, and modules or layers it cannot handle give clear errors.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lib_guided.regions.attention import RegionControl, controlled_attention
from lib_guided.regions.attention_recorder import AttentionRecorder
from lib_guided.regions.layer_grid import layer_size
from tests.regions.attention_cases import (
    LATENT,
    assert_unpatched,
    control,
    cross_attention,
    eps,
    path_atol,
)

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
