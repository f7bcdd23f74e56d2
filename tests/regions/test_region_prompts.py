"""Region control's ``prompts`` mode on tiny diffusers UNets: inside a painted region the cross-attention
reads the region's own context, outside it the prompt's, and the unconditional rows are never touched.
"""

from __future__ import annotations

import torch

from lib_guided.regions.attention import RegionControl, controlled_attention
from tests.regions.attention_cases import LATENT, SIGMA, cross_attention, left_mask, path_atol


def region_context(seed: int = 5, tokens: int = 4) -> torch.Tensor:
    """A context of another length than the prompt's (7 tokens): a phrase is encoded on its own."""
    return torch.randn(1, tokens, 32, generator=torch.Generator().manual_seed(seed))


def prompts_control(mask: torch.Tensor, context: torch.Tensor, cond_rows=1) -> RegionControl:
    control = RegionControl({}, LATENT, mode="prompts", region_contexts=[(mask, context)])
    control.set_step(SIGMA, cond_rows)
    return control


def eps_with(unet, latent: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return unet(latent, 10.0, context).sample


def test_a_region_over_the_whole_image_is_the_unet_run_on_the_region_context(unet3, inputs):
    latent, context = inputs
    phrase = region_context()
    expected = eps_with(unet3, latent[:1], phrase)
    with controlled_attention(cross_attention(unet3), prompts_control(torch.ones(LATENT), phrase)):
        got = eps_with(unet3, latent, context)
    torch.testing.assert_close(got[0], expected[0], atol=path_atol(expected), rtol=0)
    plain = eps_with(unet3, latent, context)
    assert (got[0] - plain[0]).abs().max() > 1e-2  # and that differs from the prompt's own result
    torch.testing.assert_close(got[1], plain[1], atol=path_atol(plain), rtol=0)  # uncond row: untouched


def test_outside_its_region_a_layer_reads_the_prompt(unet3, inputs):
    latent, context = inputs
    layer = cross_attention(unet3)[0][1]  # full latent resolution: the mask is exact there
    hidden = torch.randn(
        2, LATENT[0] * LATENT[1], layer.to_q.in_features, generator=torch.Generator().manual_seed(2)
    )
    with torch.no_grad():
        plain = layer(hidden, context)
        on_phrase = layer(hidden, region_context().expand(2, -1, -1))
        half = 0.5 * left_mask(1.0)  # weight 0.5: half the region's output, half the prompt's
        with controlled_attention([layer], prompts_control(half, region_context())):
            got = layer(hidden, context)
    inside = left_mask(1.0).bool().reshape(-1)
    atol = path_atol(plain)
    torch.testing.assert_close(got[0, ~inside], plain[0, ~inside], atol=atol, rtol=0)
    torch.testing.assert_close(
        got[0, inside], 0.5 * (plain[0, inside] + on_phrase[0, inside]), atol=atol, rtol=0
    )
    torch.testing.assert_close(got[1], plain[1], atol=atol, rtol=0)


def test_overlapping_regions_share_a_pixel_instead_of_adding_up():
    control = RegionControl(
        {},
        LATENT,
        mode="prompts",
        region_contexts=[(torch.ones(LATENT), region_context(1)), (torch.ones(LATENT), region_context(2))],
    )
    shares = control.blend_for(LATENT[0] * LATENT[1], torch.device("cpu"))
    assert shares.shape == (2, LATENT[0] * LATENT[1], 1)
    torch.testing.assert_close(shares.sum(0), torch.ones(LATENT[0] * LATENT[1], 1))


def test_prompts_mode_at_weight_zero_is_bit_identical_to_no_control(unet3, inputs):
    latent, context = inputs
    expected = eps_with(unet3, latent, context)
    control = prompts_control(torch.zeros(LATENT), region_context())
    assert not control.has_effect
    with controlled_attention(cross_attention(unet3), control):
        assert torch.equal(eps_with(unet3, latent, context), expected)
