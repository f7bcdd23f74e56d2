"""Loading paintings from every source kind; load errors are GuidedInputErrors naming ``strokes``."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import torch

from lib_guided.errors import GuidedInputError
from lib_guided.stroke_io import load_strokes
from tests.paintings import BACKGROUND, draw_shapes, png_base64


@pytest.fixture(scope="module")
def painting():
    return draw_shapes(128, BACKGROUND)


def test_load_from_all_source_kinds_agree(painting, tmp_path):
    image, _ = painting
    expected = np.array(image)
    path = tmp_path / "strokes.png"
    image.save(path)
    sources = [
        image,
        expected,
        expected.astype(np.float32) / 255.0,
        torch.from_numpy(expected).permute(2, 0, 1).float() / 255.0,
        torch.from_numpy(expected).permute(2, 0, 1)[None].float() / 255.0,
        str(path),
        path,
        png_base64(image),
        png_base64(image, data_url=True),
    ]
    for source in sources:
        strokes = load_strokes(source)
        assert strokes.rgb.dtype == np.uint8 and strokes.rgb.shape == (128, 128, 3)
        assert strokes.alpha.dtype == bool and strokes.alpha.all()
        np.testing.assert_array_equal(strokes.rgb, expected)


def test_rgba_alpha_threshold():
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 200
    rgba[0, :, 3] = 255
    rgba[1, :, 3] = 128
    rgba[2, :, 3] = 127
    strokes = load_strokes(rgba)
    assert strokes.alpha[:2].all() and not strokes.alpha[2:].any()


@pytest.mark.parametrize(
    "source, needle",
    [
        ("iVBORw0KGgoAAAANSUhEUgAAAA", "could not decode base64 image data"),
        ("data:image/png;base64,%%%%", "could not decode base64 image data"),
        (base64.b64encode(b"definitely not an image").decode(), "could not decode image data"),
        ("missing_file.png", "not found"),
        (np.zeros((0, 5, 3), np.uint8), "zero size"),
        (np.full((4, 4, 3), 2.0, np.float32), "[0, 1]"),
        (np.zeros((4, 4, 4), np.uint8), "the painting is empty (no opaque pixels)"),
        (torch.rand(2, 3, 4, 4), "batch"),
        (12345, "unsupported painting type"),
    ],
)
def test_load_errors_are_guided_input_errors(source, needle):
    with pytest.raises(GuidedInputError) as info:
        load_strokes(source)
    assert info.value.field == "strokes"
    assert str(info.value).startswith("strokes: ")
    assert needle in str(info.value)


def test_broken_base64_message_names_the_cause():
    with pytest.raises(GuidedInputError, match=r"^strokes: could not decode base64 image data \(.+\)$"):
        load_strokes("iVBORw0KGgoAAAANSUhEUgAAAA")
