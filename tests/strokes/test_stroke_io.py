"""Loading paintings from every source kind; load errors are GuidedInputErrors naming ``strokes``."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile

from lib_guided.errors import GuidedInputError
from lib_guided.strokes.io import NOT_IMAGE_DATA, load_strokes, painting_pixel_cap
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
        ("iVBORw0KGgoAAAANSUhEUgAAAA", NOT_IMAGE_DATA),
        ("data:image/png;base64,%%%%", NOT_IMAGE_DATA),
        (base64.b64encode(b"definitely not an image").decode(), NOT_IMAGE_DATA),
        ("missing_file.png", NOT_IMAGE_DATA),
        ("", NOT_IMAGE_DATA),
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


def test_a_string_is_never_read_as_a_path(painting, tmp_path):
    """The API hands us strings from anyone: a path to an existing image, a missing one and junk all get
    the same message, so the answer never tells what exists on the server."""
    image, _ = painting
    existing = tmp_path / "strokes.png"
    image.save(existing)
    messages = set()
    for text in (
        str(existing),
        str(tmp_path / "missing.png"),
        "/etc/passwd",
        "/etc",
        "~/x.png",
        "abc",
        "data:text/plain,hello",
        f"file://{existing}",
    ):
        with pytest.raises(GuidedInputError) as info:
            load_strokes(text)
        messages.add(str(info.value))
    assert messages == {f"strokes: {NOT_IMAGE_DATA}"}
    assert load_strokes(existing).width == 128  # a Path (CLI, Python) is read


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_cap_follows_the_output_size():
    assert painting_pixel_cap(512, 512) == 1024 * 1024  # at least 1024²
    assert painting_pixel_cap(1024, 1024) == 4 * 1024 * 1024  # twice the side
    assert painting_pixel_cap(8192, 8192) == 4096 * 4096  # never above 4096²


def test_huge_encoded_painting_is_refused_from_its_header(monkeypatch):
    # 6000x6000 of one colour compresses to a few KB: a decompression bomb for the palette work
    data = _png_bytes(Image.new("RGB", (6000, 6000), (200, 30, 30)))
    assert len(data) < 200_000
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # what the X/Y/Z plot does to the process

    def no_decoding(self):
        raise AssertionError("pixels were decoded before the size check")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    for source in (data, base64.b64encode(data).decode()):
        with pytest.raises(GuidedInputError, match=r"^strokes: the painting is 6000x6000 \(36,000,000 pix"):
            load_strokes(source, max_pixels=painting_pixel_cap(512, 512))


def test_in_memory_painting_over_the_cap_is_scaled_down_keeping_its_colours():
    rgb = np.zeros((3000, 2000, 3), np.uint8)
    rgb[:, :1000] = (200, 30, 30)
    rgb[:, 1000:] = (30, 30, 200)
    strokes = load_strokes(rgb, max_pixels=1024 * 1024)
    assert strokes.height * strokes.width <= 1024 * 1024
    assert abs(strokes.height / strokes.width - 1.5) < 0.01
    colours = {tuple(c) for c in strokes.rgb.reshape(-1, 3)}
    assert colours == {(200, 30, 30), (30, 30, 200)}


def test_16_bit_and_float_images_are_scaled_not_clipped(tmp_path):
    grey16 = Image.fromarray(np.full((8, 8), 32896, np.uint16))  # 32896 / 65535 * 255 = 128.0
    assert load_strokes(_png_bytes(grey16)).rgb[0, 0].tolist() == [128, 128, 128]
    float_tiff = tmp_path / "grey.tiff"
    Image.fromarray(np.full((8, 8), 0.25, np.float32), mode="F").save(float_tiff)
    assert load_strokes(float_tiff).rgb[0, 0].tolist() == [64, 64, 64]
