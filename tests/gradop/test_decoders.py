"""Gradient decoders: the fitted linear map, the checkpointed VAE, the tiny-decoder adapter, the cache
(the anchored ones: test_anchored_decoders.py)."""

import pytest
import torch
import torch.nn.functional as F

from lib_guided.errors import GuidedInputError
from lib_guided.gradop.decoders.factory import (
    AutocastDecoder,
    LinearDecoderCache,
    LinearLatentDecoder,
    TinyAutoencoderDecoder,
    checkpointed_diffusers_decoder,
    fit_linear_decoder,
    make_gradient_decoder,
    typical_fit_latents,
)
from lib_guided.gradop.optimise import optimise_latent
from lib_guided.strokes.painting import BlurPainting
from tests.gradop.decoder_cases import (
    SIZE,
    blurred_error,
    cosine,
    full_decoder_loss,
    latent,
    loss_gradient,
    two_colour_target,
)

# -- the linear decoder --------------------------------------------------------------------------------


def test_linear_decoder_shapes_and_latent_resolution_view(fitted):
    z = latent(0, batch=2)
    image = fitted(z)
    assert image.shape == (2, 3, SIZE, SIZE) and image.dtype == z.dtype
    # a flat latent gives the flat colour W z + b everywhere (upsampling keeps constants)
    flat = torch.full((1, 4, 8, 8), 0.7)
    expected = fitted.at_latent_resolution(flat)[:, :, :1, :1].expand(1, 3, SIZE, SIZE)
    assert torch.allclose(fitted(flat), expected, atol=1e-6)
    smooth = LinearLatentDecoder(fitted.weight, fitted.bias, 8, smoothing=2.0)(z)
    assert smooth.shape == image.shape and smooth.std() < image.std()


def test_fitted_map_reproduces_the_blurred_decoder_far_better_than_a_random_map(tiny_model, fitted):
    held_out = typical_fit_latents(tiny_model, 8, (8, 8), seed=1)
    generator = torch.Generator().manual_seed(3)
    random_map = LinearLatentDecoder(0.5 * torch.randn(3, 4, generator=generator), torch.full((3,), 0.5), 8)
    mean_colour = LinearLatentDecoder(torch.zeros(3, 4), fitted.bias, 8)
    fit_error = blurred_error(tiny_model.decode, fitted, held_out)
    random_error = blurred_error(tiny_model.decode, random_map, held_out)
    constant_error = blurred_error(tiny_model.decode, mean_colour, held_out)
    # measured: fitted 3x3 0.0152 (1x1: 0.0154), random 0.092, constant colour 0.0158
    assert fit_error < 0.3 * random_error, (fit_error, random_error)
    # a random-weight VAE is far from linear (GroupNorm makes it nearly scale-invariant in the latent):
    # the fit barely beats the mean colour here; on trained VAEs the linear map is the known cheap preview
    assert fit_error <= constant_error, (fit_error, constant_error)


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_fit_recovers_a_nearly_linear_decoder_and_its_gradient(kernel_size):
    """A decoder that is a known linear map plus fine texture: the fit finds the map, the gradients agree."""
    weight = torch.tensor([[0.3, -0.1, 0.2, 0.05], [0.1, 0.25, -0.15, 0.1], [-0.2, 0.05, 0.1, 0.3]])
    bias = torch.tensor([0.5, 0.45, 0.4])
    texture = torch.nn.Conv2d(4, 3, 3, padding=1)
    torch.nn.init.normal_(texture.weight, std=0.5, generator=torch.Generator().manual_seed(0))
    stripes = torch.cos(torch.arange(SIZE) * torch.pi).view(1, 1, 1, SIZE)  # period 2 px: blurred away

    def decode(z: torch.Tensor) -> torch.Tensor:
        low = LinearLatentDecoder(weight, bias, 8)(z)
        return low + 0.05 * F.interpolate(torch.tanh(texture(z)), scale_factor=8) * stripes

    found = fit_linear_decoder(decode, [latent(s, batch=2) for s in range(3)], 8, kernel_size=kernel_size)
    # the true map is per pixel: the centre tap holds it, the neighbours' taps stay near zero
    centre = kernel_size // 2
    assert torch.allclose(found.weight[:, :, centre, centre], weight, atol=0.02)
    off_centre = found.weight.clone()
    off_centre[:, :, centre, centre] = 0
    assert off_centre.abs().max() < 0.03 and torch.allclose(found.bias, bias, atol=0.02)
    target = two_colour_target()
    cos = [
        cosine(
            loss_gradient(decode, 0.5 * latent(10 + s), target),
            loss_gradient(found, 0.5 * latent(10 + s), target),
        )
        for s in range(4)
    ]
    assert min(cos) > 0.95, cos


def test_linear_gradient_agrees_with_the_full_decoder_on_the_tiny_model(tiny_model, fitted):
    target = two_colour_target()
    fit_latents = typical_fit_latents(tiny_model, 8, (8, 8))
    per_pixel = fit_linear_decoder(tiny_model.decode, fit_latents, 8, kernel_size=1)
    cos = {
        name: [
            cosine(
                loss_gradient(tiny_model.decode, latent(100 + s), target),
                loss_gradient(decoder, latent(100 + s), target),
            )
            for s in range(8)
        ]
        for name, decoder in (("3x3", fitted), ("1x1", per_pixel))
    }
    means = {name: sum(values) / len(values) for name, values in cos.items()}
    print(f"gradient cosine against the full decoder, tiny random model: {means} per seed {cos}")
    # measured: 3x3 mean 0.363 (0.25 .. 0.43 per seed), 1x1 mean 0.131 (0.04 .. 0.24): this random VAE's
    # output at a pixel depends on the neighbouring latents, which a per-pixel map cannot follow
    assert means["3x3"] > 0.25 and min(cos["3x3"]) > 0.15, cos
    assert means["3x3"] > means["1x1"] > 0.0, means


def test_adam_through_the_fitted_decoder_lowers_the_full_decoders_loss(tiny_model, fitted):
    target = two_colour_target()
    changes = {"full": [], "linear": []}
    for s in range(4):
        w = latent(100 + s)
        before = full_decoder_loss(tiny_model, w, target)
        for name, decoder in (("full", tiny_model.decode), ("linear", fitted)):
            with torch.no_grad():
                out, first, last = optimise_latent(w, target, decoder, BlurPainting(), steps=12, lr=0.1)
            assert not out.requires_grad and last < first
            changes[name].append(full_decoder_loss(tiny_model, out, target) / before - 1.0)
    print(f"full-decoder stroke loss change after 12 Adam steps: {changes}")
    # measured: full -0.27 .. -0.23, 3x3 linear -0.20 .. -0.13 (the 1x1 map: +0.02 .. +0.13, worse)
    assert max(changes["linear"]) < -0.08 and max(changes["full"]) < -0.15, changes
    assert fitted.weight.grad is None


# -- the checkpointed full decoder ---------------------------------------------------------------------


def test_checkpointed_decoder_matches_the_plain_decoder_and_leaves_weights_alone(tiny_model):
    vae = tiny_model.vae
    flags = [p.requires_grad for p in vae.parameters()]
    vae.requires_grad_(True)  # weights that could collect gradients: none may appear
    try:
        lean = make_gradient_decoder("full-checkpointed", tiny_model)
        w = latent(7)
        with torch.no_grad():
            assert torch.allclose(lean(w), tiny_model.decode(w), atol=1e-6)
        target = two_colour_target()
        plain, checkpointed = loss_gradient(tiny_model.decode, w, target), loss_gradient(lean, w, target)
        assert torch.allclose(plain, checkpointed, rtol=1e-5, atol=1e-8)
        assert all(p.grad is None for p in vae.parameters())
    finally:
        for p, flag in zip(vae.parameters(), flags, strict=True):
            p.requires_grad_(flag)


def saved_activation_bytes(decode, w: torch.Tensor) -> int:
    """Bytes autograd keeps between the forward and the backward of ``decode(w)``."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    x = w.clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        decode(x).sum()
    return total


def test_checkpointing_keeps_far_fewer_activations(tiny_model):
    w = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))  # a 128x128 image
    lean = checkpointed_diffusers_decoder(tiny_model.vae, tiny_model.scaling_factor)
    plain_bytes, lean_bytes = saved_activation_bytes(tiny_model.decode, w), saved_activation_bytes(lean, w)
    # measured: 16.5 MB vs 3.2 MB here, 262 MB vs 51 MB at 512x512 (stage boundaries only)
    assert lean_bytes < 0.3 * plain_bytes, (plain_bytes, lean_bytes)


def test_autocast_decoder_runs_in_bfloat16_and_returns_the_latent_dtype(tiny_model):
    w = latent(8)
    with torch.no_grad():
        image = AutocastDecoder(tiny_model.decode, torch.bfloat16)(w)
        reference = tiny_model.decode(w)
    assert image.dtype == torch.float32
    assert (image - reference).abs().max() < 0.05


# -- the tiny-decoder adapter --------------------------------------------------------------------------


class RandomTinyDecoder(torch.nn.Module):
    """Stands in for TAESD: latent -> image in [-1, 1] at 8x, returned like diffusers' DecoderOutput."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(4, 8, 3, padding=1),
            torch.nn.ReLU(),
            torch.nn.Upsample(scale_factor=8),
            torch.nn.Conv2d(8, 3, 3, padding=1),
            torch.nn.Tanh(),
        )

    def decode(self, z: torch.Tensor):
        return type("DecoderOutput", (), {"sample": self.net(z)})()


def test_tiny_decoder_adapter_maps_to_unit_range_and_gives_latent_gradients_only(tiny_model):
    module = RandomTinyDecoder()
    tiny = TinyAutoencoderDecoder.from_diffusers(module)
    with torch.no_grad():
        image = tiny(latent(0))
    assert image.shape == (1, 3, SIZE, SIZE) and float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert torch.allclose(TinyAutoencoderDecoder(module.net, output_range=(-1, 1))(latent(0)), image)
    assert make_gradient_decoder("tiny", tiny_model, tiny_decoder=tiny) is tiny
    with torch.no_grad():
        _, first, last = optimise_latent(
            latent(1), two_colour_target(), tiny, BlurPainting(), steps=5, lr=0.1
        )
    assert last < first
    assert all(p.grad is None for p in module.parameters())


# -- the cache and the factory -------------------------------------------------------------------------


def test_cache_round_trip_gives_identical_coefficients(tmp_path, fitted):
    cache = LinearDecoderCache(tmp_path)
    cache.put("sd15 hash/abc:1", fitted)
    path = cache.path_for("sd15 hash/abc:1")
    assert path.is_file() and path.parent == tmp_path  # odd characters never leave the folder
    loaded = LinearDecoderCache(tmp_path).get("sd15 hash/abc:1")
    assert torch.equal(loaded.weight, fitted.weight) and torch.equal(loaded.bias, fitted.bias)
    assert loaded.scale_factor == fitted.scale_factor
    assert LinearDecoderCache(tmp_path).get("another checkpoint") is None
    path.write_text("{not json")
    assert LinearDecoderCache(tmp_path).get("sd15 hash/abc:1") is None  # damaged: refit, not a crash


def test_linear_decoder_is_fitted_once_per_key(tiny_model, fitted):
    cache = LinearDecoderCache()
    calls = []

    def fit():
        calls.append(1)
        return fitted

    assert cache.get_or_fit("ckpt", fit) is fitted and cache.get_or_fit("ckpt", fit) is fitted
    assert len(calls) == 1
    made = make_gradient_decoder("linear", tiny_model, cache, cache_key="ckpt")
    assert made is fitted  # the factory uses the cached fit
    fresh = make_gradient_decoder(
        "linear", tiny_model, LinearDecoderCache(), cache_key="x", fit_latent_size=(4, 4)
    )
    assert isinstance(fresh, LinearLatentDecoder) and fresh.latent_channels == 4


def test_bad_decoder_names_and_missing_pieces_are_input_errors(tiny_model):
    for name in ("vae", "", "linear-ish"):
        with pytest.raises(GuidedInputError) as err:
            make_gradient_decoder(name, tiny_model)
        assert err.value.field == "decoder"
    with pytest.raises(GuidedInputError, match="tiny"):
        make_gradient_decoder("tiny", tiny_model)

    class NoVae:
        scaling_factor = 0.18215

        def decode(self, z):
            return z

    with pytest.raises(GuidedInputError, match="AutoencoderKL"):
        make_gradient_decoder("full-checkpointed", NoVae())
    assert make_gradient_decoder("FULL", tiny_model) == tiny_model.decode
