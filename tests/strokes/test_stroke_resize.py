"""The stroke target at output resolution: shapes, painted mask, background fill, size checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lib_guided.errors import GuidedInputError
from lib_guided.strokes.io import StrokeImage, load_strokes
from lib_guided.strokes.resize import resize_strokes
from tests.paintings import BACKGROUND, RED, draw_shapes


@pytest.fixture(scope="module")
def painting():
    return draw_shapes(128, BACKGROUND)


def test_resize_strokes_shapes_and_values(painting):
    image, _ = painting
    target, mask = resize_strokes(load_strokes(image), 64, 64)
    assert target.shape == (1, 3, 64, 64) and mask.shape == (1, 1, 64, 64)
    assert target.dtype == torch.float32 and float(target.min()) >= 0 and float(target.max()) <= 1
    assert torch.all(mask == 1)
    # Background corner keeps its colour.
    np.testing.assert_allclose(target[0, :, 0, 0].numpy() * 255, BACKGROUND, atol=1)


def test_resize_strokes_rgba_returns_painted_mask_and_no_dark_fringe():
    image, truths = draw_shapes(128, (0, 0, 0, 0))
    target, mask = resize_strokes(load_strokes(image), 256, 256)
    assert float(mask[0, 0, 0, 0]) == 0.0 and float(target[..., 0, 0].abs().max()) == 0.0
    assert 0.0 < float(mask.mean()) < 1.0
    # Where partially painted, the colour is the stroke's, not darkened by the transparent black.
    red_edge = (mask[0, 0] > 0.05) & (mask[0, 0] < 0.95) & (target[0, 0] > target[0, 2])
    assert red_edge.any()
    assert float(target[0, 0][red_edge].min()) * 255 > RED[0] - 12


def test_resize_strokes_with_background_fills_unpainted():
    image, _ = draw_shapes(64, (0, 0, 0, 0))
    target, mask = resize_strokes(load_strokes(image), 64, 64, background="#ffffff")
    assert torch.all(mask == 1)
    assert torch.allclose(target[0, :, 0, 0], torch.ones(3))


def test_resize_strokes_rejects_aspect_ratio_mismatch(painting):
    with pytest.raises(GuidedInputError) as info:
        resize_strokes(load_strokes(painting[0]), 768, 512)
    assert info.value.field == "strokes"
    assert "1.000" in str(info.value) and "1.500" in str(info.value)
    # Within 1% is fine (e.g. rounding to multiples of 8).
    strokes = StrokeImage(np.zeros((100, 101, 3), np.uint8), np.ones((100, 101), bool))
    assert resize_strokes(strokes, 512, 512)[0].shape == (1, 3, 512, 512)


@pytest.mark.parametrize("width, height, field", [(0, 64, "width"), (64, -1, "height"), (64.0, 64, "width")])
def test_resize_strokes_rejects_bad_sizes(painting, width, height, field):
    with pytest.raises(GuidedInputError) as info:
        resize_strokes(load_strokes(painting[0]), width, height)
    assert info.value.field == field
