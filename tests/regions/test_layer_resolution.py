"""Per-layer resolution: region masks resized to every attention layer's grid (and cached), layer sizes
from the query length, and recorded maps brought back to the latent grid.
"""

from __future__ import annotations

import pytest
import torch

from lib_guided.regions.attention import controlled_attention
from lib_guided.regions.attention_recorder import AttentionRecorder
from lib_guided.regions.layer_grid import layer_size
from tests.regions.attention_cases import LATENT, TOKEN, control, cross_attention, eps

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
