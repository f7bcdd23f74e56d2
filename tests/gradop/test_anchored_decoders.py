"""The anchored gradient decoders: the linear map anchored on full decodes (linear-anchored, -half) and
refitted around the first phase's latent (linear-local)."""

import pytest
import torch

from lib_guided.gradop.decoders.factory import (
    AnchoredLinearDecoder,
    LinearDecoderCache,
    LocallyRefittedDecoder,
    make_gradient_decoder,
)
from lib_guided.gradop.optimise import optimise_latent
from lib_guided.strokes.painting import BlurPainting
from tests.gradop.decoder_cases import (
    full_decoder_loss,
    latent,
    two_colour_target,
)

# -- the anchored linear decoder -----------------------------------------------------------------------


def test_anchored_decoder_is_exact_at_its_anchor_and_moves_with_the_linear_map(tiny_model, fitted):
    anchored = AnchoredLinearDecoder(tiny_model.decode, fitted)
    with pytest.raises(RuntimeError, match="start_phase"):
        anchored(latent(0))
    w0, w1 = latent(0), latent(1)
    anchored.start_phase(w0)
    with torch.no_grad():
        assert torch.allclose(anchored(w0), tiny_model.decode(w0), atol=1e-5)
        assert torch.allclose(anchored(w1) - anchored(w0), fitted(w1) - fitted(w0), atol=1e-5)
    assert anchored.offset.requires_grad is False  # a constant: the gradient flows through the map only


def test_anchored_decoder_reanchors_every_n_calls(tiny_model, fitted):
    calls = []

    def counting_decode(z):
        calls.append(z.clone())
        return tiny_model.decode(z)

    anchored = AnchoredLinearDecoder(counting_decode, fitted, reanchor_every=4)
    w = latent(2)
    anchored.start_phase(w)
    for k in range(12):
        anchored(w + 0.01 * k)
    assert len(calls) == 3  # the phase start, then after calls 4 and 8
    assert torch.equal(calls[1], w + 0.04) and torch.equal(calls[2], w + 0.08)


def test_half_resolution_anchor_decodes_the_pooled_latent_and_is_close_after_the_blur(tiny_model, fitted):
    seen = []

    def counting_decode(z):
        seen.append(tuple(z.shape[-2:]))
        return tiny_model.decode(z)

    w = latent(3)
    half = AnchoredLinearDecoder(counting_decode, fitted, anchor_downscale=2)
    half.start_phase(w)
    assert seen == [(w.shape[-2] // 2, w.shape[-1] // 2)]  # one decode, of the pooled latent
    with torch.no_grad():
        image, exact = half(w), tiny_model.decode(w).clamp(0, 1)
        assert image.shape == exact.shape
        painting = BlurPainting()
        blurred_error = float((painting(image.clamp(0, 1)) - painting(exact)).abs().mean())
        sharp_error = float((image.clamp(0, 1) - exact).abs().mean())
    print(f"half-resolution anchor: mean abs error {sharp_error:.4f} sharp, {blurred_error:.4f} after f")
    assert blurred_error < sharp_error  # what it loses is detail, which the loss's blur does not see
    odd = torch.randn(1, 4, 7, 7, generator=torch.Generator().manual_seed(0))
    AnchoredLinearDecoder(counting_decode, fitted, anchor_downscale=2).start_phase(odd)
    assert seen[-1] == (7, 7)  # a latent that does not pool evenly is anchored at full resolution


class CountingModel:
    """The tiny model with its full decoder's calls recorded (their latents' sizes)."""

    def __init__(self, model) -> None:
        self.model, self.sizes = model, []

    def decode(self, z):
        self.sizes.append(tuple(z.shape[-2:]))
        return self.model.decode(z)

    def __getattr__(self, name):
        return getattr(self.model, name)


def test_the_default_decoder_renews_its_pooled_anchor_every_four_steps(tiny_model):
    counting = CountingModel(tiny_model)
    half = make_gradient_decoder("linear-anchored-half", counting, cache=LinearDecoderCache())
    counting.sizes.clear()  # the linear map's fit decodes too
    w = latent(4)
    with torch.no_grad():
        target, painting = two_colour_target(), BlurPainting()
        optimise_latent(w, target, half, painting, steps=12, lr=0.05, optimiser="normalised")
    pooled = (w.shape[-2] // 2, w.shape[-1] // 2)
    assert counting.sizes == [pooled] * 3  # the phase start, then after steps 4 and 8: 9 per image at K 3


def test_adam_through_the_anchored_decoder_lowers_the_full_decoders_loss(tiny_model, fitted):
    target = two_colour_target()
    changes = []
    for s in range(4):
        w = latent(100 + s)
        before = full_decoder_loss(tiny_model, w, target)
        anchored = make_gradient_decoder("linear-anchored", tiny_model, cache=LinearDecoderCache())
        with torch.no_grad():
            out, first, last = optimise_latent(w, target, anchored, BlurPainting(), steps=12, lr=0.1)
        assert first == pytest.approx(before, rel=1e-4)  # exact at the phase start, unlike the plain map
        changes.append(full_decoder_loss(tiny_model, out, target) / before - 1.0)
    print(f"full-decoder stroke loss change, anchored linear decoder: {changes}")
    assert max(changes) < -0.08, changes


# -- the linear map refitted at the first phase (linear-local) ------------------------------------------


def test_local_refit_is_exact_at_its_anchor_and_costs_two_forward_passes(tiny_model, fitted):
    calls = []

    def counting_decode(z):
        calls.append(z.clone())
        return tiny_model.decode(z)

    local = LocallyRefittedDecoder(counting_decode, fitted)
    with pytest.raises(RuntimeError, match="start_phase"):
        local(latent(0))
    w0 = latent(0, batch=2)
    local.start_phase(w0)
    assert len(calls) == 2 and torch.equal(calls[0], w0)  # the anchor and one probe, no backward
    with torch.no_grad():
        torch.testing.assert_close(local(w0), tiny_model.decode(w0), atol=1e-5, rtol=0)
    assert not torch.equal(local.linear.weight, fitted.weight)  # refitted around w0
    again = LocallyRefittedDecoder(tiny_model.decode, fitted)
    again.start_phase(w0)
    assert torch.equal(again.linear.weight, local.linear.weight)  # seeded probes: reproducible


def test_later_phases_of_the_local_refit_anchor_with_one_pass_and_keep_the_first_phases_map(
    tiny_model, fitted
):
    calls = []

    def counting_decode(z):
        calls.append(z.clone())
        return tiny_model.decode(z)

    local = LocallyRefittedDecoder(counting_decode, fitted)
    local.start_phase(latent(0))
    refitted = local.linear
    w1 = latent(1)
    local.start_phase(w1)
    assert len(calls) == 3 and torch.equal(calls[2], w1)  # one anchor decode, no probe
    assert local.linear is refitted  # the first phase's local map is kept
    with torch.no_grad():
        torch.testing.assert_close(local(w1), tiny_model.decode(w1), atol=1e-5, rtol=0)  # re-anchored
    every = LocallyRefittedDecoder(counting_decode, fitted, refit_phases=2)
    calls.clear()
    every.start_phase(latent(0))
    first_map = every.linear
    every.start_phase(w1)
    assert len(calls) == 4 and not torch.equal(every.linear.weight, first_map.weight)  # refitted around w1
    with pytest.raises(ValueError, match="refit_phases"):
        LocallyRefittedDecoder(tiny_model.decode, fitted, refit_phases=0)


def test_adam_through_the_local_refit_lowers_the_full_decoders_loss_also_under_autocast(tiny_model):
    target = two_colour_target()
    for s in range(2):
        w = latent(100 + s)
        before = full_decoder_loss(tiny_model, w, target)
        local = make_gradient_decoder(
            "linear-local", tiny_model, cache=LinearDecoderCache(), autocast_dtype=torch.bfloat16
        )
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):  # as the WebUI samples
            out, first, last = optimise_latent(w, target, local, BlurPainting(), steps=12, lr=0.1)
        assert out.dtype == torch.float32 and bool(torch.isfinite(out).all())
        assert first == pytest.approx(before, rel=2e-2)  # exact at the start, up to the bfloat16 decode
        assert full_decoder_loss(tiny_model, out, target) < 0.92 * before
