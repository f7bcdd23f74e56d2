"""Painting functions: Gaussian blur, median + palette quantisation, stroke loss, factory."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lib_guided.errors import GuidedInputError
from lib_guided.strokes.painting import (
    BlurPainting,
    MedianQuantizePainting,
    PaintingFunction,
    gaussian_blur,
    gaussian_kernel1d,
    gaussian_kernel_size_for,
    make_painting,
    median_filter,
    median_quantize,
    palette_tensor,
    quantize_to_palette,
    stroke_loss,
)

PALETTE = torch.tensor([[0.92, 0.90, 0.82], [0.82, 0.19, 0.19], [0.19, 0.31, 0.75]])


def _image(seed: int = 0, size: tuple[int, int] = (40, 48), batch: int = 2) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, *size, generator=generator)


# --- Gaussian blur ---------------------------------------------------------------------------------


def _blur_atol(kernel_size: int, magnitude: float) -> float:
    """Worst-case float32 error of the separable blur against exact arithmetic, in any summation order.

    Each of the two k-tap passes (weights >= 0 summing to 1) errs by at most k eps32 times the largest
    input value; the kernel's rounding to float32 adds eps32 / 2 of it.
    """
    return (2 * kernel_size + 1) * torch.finfo(torch.float32).eps * magnitude


def test_kernel_size_scales_with_shorter_side():
    assert gaussian_kernel_size_for(512, 512) == (35, pytest.approx(7.0))
    assert gaussian_kernel_size_for(512, 768)[0] == 35  # the shorter side decides
    small, small_sigma = gaussian_kernel_size_for(64, 64)
    assert small % 2 == 1 and 3 <= small < 35 and small_sigma == pytest.approx(small / 5)
    large, _ = gaussian_kernel_size_for(1024, 1024)
    assert large % 2 == 1 and large > 35
    assert gaussian_kernel_size_for(8, 8)[0] == 3  # never below 3
    for side in range(16, 1100, 37):
        assert gaussian_kernel_size_for(side, side)[0] % 2 == 1


def test_kernel_is_normalised_and_symmetric():
    kernel = gaussian_kernel1d(35, 7.0, dtype=torch.float64)
    assert kernel.shape == (35,)
    assert float(kernel.sum()) == pytest.approx(1.0, abs=1e-12)
    assert torch.allclose(kernel, kernel.flip(0))
    assert int(kernel.argmax()) == 17


@pytest.mark.parametrize("kernel_size, sigma", [(35, 7.0), (5, 1.0), (9, 3.0)])
def test_separable_blur_equals_full_2d_convolution(kernel_size, sigma):
    image = _image(size=(40, 48))
    kernel = gaussian_kernel1d(kernel_size, sigma, dtype=torch.float64)  # the reference is float64
    full = torch.outer(kernel, kernel).expand(3, 1, kernel_size, kernel_size)
    assert float(full[0, 0].sum()) == pytest.approx(1.0, abs=1e-12)
    pad = kernel_size // 2
    expected = F.conv2d(F.pad(image.double(), (pad, pad, pad, pad), mode="reflect"), full, groups=3)
    result = gaussian_blur(image, kernel_size, sigma)
    assert result.shape == image.shape
    atol = _blur_atol(kernel_size, float(image.abs().max()))
    assert torch.allclose(result.double(), expected, rtol=0, atol=atol)


def test_blur_of_constant_image_is_constant():
    image = torch.full((1, 3, 33, 20), 0.37)
    blurred = gaussian_blur(image, 35, 7.0)  # kernel larger than width
    assert torch.allclose(blurred, image, rtol=0, atol=_blur_atol(35, 0.37))
    painting = BlurPainting()
    size, _ = painting.kernel_for(33, 20)
    assert torch.allclose(painting(image), image, rtol=0, atol=_blur_atol(size, 0.37))


def test_blur_actually_smooths():
    image = _image()
    blurred = BlurPainting(kernel_size=9, sigma=2.0)(image)
    assert float(blurred.std()) < 0.5 * float(image.std())
    assert torch.allclose(blurred.mean(dim=(2, 3)), image.mean(dim=(2, 3)), atol=0.02)


def test_blur_painting_defaults_follow_the_image_size():
    painting = BlurPainting()
    assert painting.kernel_for(512, 512) == (35, pytest.approx(7.0))
    assert BlurPainting(kernel_size=11).kernel_for(512, 512) == (11, pytest.approx(2.2))
    image = _image(size=(64, 64), batch=1)
    size, sigma = gaussian_kernel_size_for(64, 64)
    assert torch.allclose(painting(image), gaussian_blur(image, size, sigma))


def test_blur_keeps_dtype():
    image = _image().double()
    assert gaussian_blur(image, 5, 1.0).dtype == torch.float64
    assert gaussian_blur(image.half(), 5, 1.0).dtype == torch.float16


@pytest.mark.parametrize(
    "kernel_size, sigma, field", [(4, 1.0, "kernel_size"), (0, 1.0, "kernel_size"), (5, 0.0, "sigma")]
)
def test_blur_rejects_bad_kernels(kernel_size, sigma, field):
    with pytest.raises(GuidedInputError) as info:
        gaussian_blur(_image(), kernel_size, sigma)
    assert info.value.field == field


# --- median + quantisation -------------------------------------------------------------------------


def test_median_filter_removes_salt_noise_and_keeps_flat_areas():
    image = torch.full((1, 3, 16, 16), 0.5)
    noisy = image.clone()
    noisy[0, :, 5, 7] = 1.0
    noisy[0, :, 10, 3] = 0.0
    assert torch.allclose(median_filter(noisy, 3), image)
    assert median_filter(noisy, 1) is noisy


def test_median_matches_reference_on_random_image():
    image = _image(size=(9, 11), batch=1)
    result = median_filter(image, 3)
    padded = F.pad(image, (1, 1, 1, 1), mode="reflect")
    expected = padded.unfold(2, 3, 1).unfold(3, 3, 1).reshape(1, 3, 9, 11, 9).median(dim=-1).values
    assert torch.equal(result, expected)


def _pixels(image: torch.Tensor) -> torch.Tensor:
    return image.permute(0, 2, 3, 1).reshape(-1, image.shape[1])


def test_cold_quantisation_gives_palette_colours_only():
    # Distances are exact differences, not torch.cdist: on > 25 rows cdist uses |a|^2 + |b|^2 - 2ab,
    # whose float32 rounding (then a square root) depends on the CPU's kernels (issue 9).
    image = _image(size=(24, 24))
    # temperature 0: one-hot weights times the palette are exact, so every pixel IS a palette colour
    hard = _pixels(median_quantize(image, PALETTE, 3, 0.0))
    assert (hard[:, None, :] == PALETTE[None]).all(dim=-1).any(dim=1).all()

    # temperature 1e-5: out - p_j = sum_k w_k (p_k - p_j) around the nearest colour p_j, with softmax weights
    # w_k <= exp(-(d_k - d_j) / T) over squared distances d (exact here: float64 from the median-filtered
    # pixels). The library's float32 |x|^2 - 2 x.p + |p|^2 may shift each gap by a few eps32 times the
    # size of those terms: ``slack`` is 16 eps32 times the largest. Then 3 eps32 for the weighted sum.
    temperature, eps32 = 1e-5, torch.finfo(torch.float32).eps
    soft = _pixels(median_quantize(image, PALETTE, 3, temperature))
    x, palette = _pixels(median_filter(image, 3)).double(), PALETTE.double()
    squared = (x[:, None, :] - palette[None]).square().sum(dim=-1)
    nearest = squared.argmin(dim=1)
    gap = squared - squared.min(dim=1, keepdim=True).values
    terms = x.square().sum(1, keepdim=True) + 2 * (x @ palette.T).abs() + palette.square().sum(1)
    slack = 16 * eps32 * float(terms.max())
    span = (palette[None] - palette[nearest][:, None]).abs().amax(dim=-1)
    bound = (torch.exp(-(gap - slack) / temperature) * span).sum(dim=1) + 3 * eps32  # span is 0 at k = j
    deviation = (soft - PALETTE[nearest]).abs().amax(dim=1).double()
    assert (deviation <= bound).all(), float((deviation / bound).max())
    # nearly every pixel has a clear nearest colour (runner-up >= 100 T further): there the bound is
    # e^-98, so those pixels are palette colours up to the rounding of the weighted sum
    ordered = squared.sort(dim=1).values
    clear = ordered[:, 1] - ordered[:, 0] >= 100 * temperature
    assert float(clear.double().mean()) > 0.99
    assert float(deviation[clear].max()) <= 3 * eps32


def test_quantisation_picks_the_nearest_colour():
    image = PALETTE.view(1, 3, 3, 1).permute(0, 2, 1, 3).clone()  # 3 pixels, one per palette colour
    shifted = (image + 0.05).clamp(0, 1)
    out = quantize_to_palette(shifted, PALETTE, 1e-4)
    assert torch.allclose(out, image, atol=1e-4)


def test_warm_quantisation_is_soft():
    image = _image(size=(8, 8))
    out = quantize_to_palette(image, PALETTE, 10.0)
    # Very high temperature: every pixel tends to the mean palette colour.
    assert torch.allclose(out, PALETTE.mean(0).view(1, 3, 1, 1).expand_as(out), atol=0.05)


def test_median_quantize_painting_accepts_colour_lists():
    painting = MedianQuantizePainting(["#eae6d1", (208, 48, 48), "rgb(48, 80, 192)"], median_size=3)
    assert painting.palette.shape == (3, 3)
    assert torch.allclose(palette_tensor(["#ff0000"]), torch.tensor([[1.0, 0.0, 0.0]]))
    out = painting(_image(size=(16, 16)))
    assert out.shape == (2, 3, 16, 16)


def test_median_quantize_works_in_half_precision():
    image = _image(size=(16, 16)).half()
    out = median_quantize(image, PALETTE, 3, 0.02)
    assert out.dtype == torch.float16 and torch.isfinite(out).all()


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"palette": PALETTE, "median_size": 4}, "median_size"),
        ({"palette": PALETTE, "temperature": -1.0}, "temperature"),
        ({"palette": PALETTE, "temperature": float("nan")}, "temperature"),
        ({"palette": []}, "palette"),
        ({"palette": ["#zzzzzz"]}, "palette[0]"),
    ],
)
def test_median_quantize_rejects_bad_options(kwargs, field):
    with pytest.raises(GuidedInputError) as info:
        MedianQuantizePainting(**kwargs)
    assert info.value.field == field


# --- gradients -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "painting",
    [BlurPainting(), BlurPainting(kernel_size=7, sigma=1.5), MedianQuantizePainting(PALETTE, median_size=3)],
    ids=["blur-auto", "blur-7", "median-quantize"],
)
def test_gradients_flow_through_painting_functions(painting):
    image = _image(size=(32, 32)).requires_grad_(True)
    target = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    loss = stroke_loss(painting, image, target)
    loss.backward()
    assert image.grad is not None
    assert torch.isfinite(image.grad).all()
    assert float(image.grad.abs().sum()) > 0


def test_stroke_loss_does_not_paint_the_target_and_matches_mse():
    painting = BlurPainting(kernel_size=5, sigma=1.0)
    image, target = _image(1), _image(2)
    expected = F.mse_loss(gaussian_blur(image, 5, 1.0), target)
    assert torch.allclose(stroke_loss(painting, image, target), expected)
    # Zero when the painting of the image equals the raw target.
    assert float(stroke_loss(painting, image, painting(image))) == pytest.approx(0.0, abs=1e-12)


def test_weighted_stroke_loss_ignores_unpainted_pixels():
    painting = BlurPainting(kernel_size=3, sigma=0.8)
    image = _image(3, size=(16, 16)).requires_grad_(True)
    target = painting(image).detach()
    mask = torch.zeros(1, 1, 16, 16)
    mask[..., :8, :] = 1.0
    wild_target = target.clone()
    wild_target[..., 8:, :] = torch.rand(2, 3, 8, 16)  # differences only where unpainted
    loss = stroke_loss(painting, image, wild_target, mask)
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-10)

    shifted = target.clone()
    shifted[..., :8, :] += 0.1  # a difference of 0.1 everywhere painted
    loss = stroke_loss(painting, image, shifted, mask[0, 0])  # [H,W] masks work too
    assert float(loss.detach()) == pytest.approx(0.01, rel=1e-4)  # mean over painted pixels, not all
    loss.backward()
    assert torch.isfinite(image.grad).all() and float(image.grad.abs().sum()) > 0


def test_stroke_loss_validates_shapes():
    painting = BlurPainting(kernel_size=3, sigma=1.0)
    image = _image(size=(16, 16))
    with pytest.raises(GuidedInputError) as info:
        stroke_loss(painting, image, torch.rand(1, 3, 8, 8))
    assert info.value.field == "target"
    with pytest.raises(GuidedInputError) as info:
        stroke_loss(painting, image, torch.rand(1, 3, 16, 16), torch.ones(1, 1, 8, 8))
    assert info.value.field == "weight_mask"
    with pytest.raises(GuidedInputError) as info:
        stroke_loss(painting, torch.rand(3, 16, 16), torch.rand(1, 3, 16, 16))
    assert info.value.field == "image"


# --- factory ---------------------------------------------------------------------------------------


def test_make_painting_factory():
    blur = make_painting("blur", kernel_size=9, sigma=2.0)
    assert isinstance(blur, BlurPainting) and isinstance(blur, PaintingFunction)
    median = make_painting("median-quantize", palette=PALETTE, temperature=0.01)
    assert isinstance(median, MedianQuantizePainting) and median.temperature == 0.01
    assert isinstance(make_painting("Median_Quantize", palette=PALETTE), MedianQuantizePainting)


@pytest.mark.parametrize("name, kwargs", [("sharpen", {}), ("blur", {"radius": 3})])
def test_make_painting_rejects_unknown_names_and_options(name, kwargs):
    with pytest.raises(GuidedInputError) as info:
        make_painting(name, **kwargs)
    assert info.value.field == "painting"
    assert "blur" in str(info.value)
