"""A linear latent -> RGB map fitted to a model's own VAE decoder (the cheap GradOP decoder).

The painting function GradOP differentiates through is a heavy blur, so the stroke loss sees only the
low frequencies of the decoded image, and those are close to a linear function of the latents around
each pixel. A small convolution latent -> RGB (C x 3 per kernel tap, plus a bias; 1x1 is the classic
per-pixel preview map, 3x3 the default here), bilinear upsampling by the VAE factor and an optional
Gaussian smoothing reproduce them at a tiny fraction of the decoder's cost.

The map is fitted by least squares at latent resolution: the decoder's output area-averaged over each
latent pixel's ``f x f`` patch is the target, so a fit needs a handful of decodes and one small solve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from lib_guided.strokes.painting import gaussian_blur

Decode = Callable[[torch.Tensor], torch.Tensor]


class LinearLatentDecoder:
    """``image = smooth(upsample(conv(latent, W) + b))``: latent [B,C,h,w] -> image [B,3,h*f,w*f].

    ``W`` is [3, C] (per pixel, a 1x1 convolution) or [3, C, k, k] (each latent pixel's k x k
    neighbourhood, replicate-padded at the border); a [3, C] matrix is stored as [3, C, 1, 1].
    """

    def __init__(
        self, weight: torch.Tensor, bias: torch.Tensor, scale_factor: int, smoothing: float = 0.0
    ) -> None:
        weight, bias = torch.as_tensor(weight).float(), torch.as_tensor(bias).float()
        if weight.ndim == 2:
            weight = weight[:, :, None, None]
        square_odd = weight.ndim == 4 and weight.shape[2] == weight.shape[3] and weight.shape[2] % 2 == 1
        if not square_odd or weight.shape[0] != 3 or bias.shape != (3,):
            raise ValueError(
                f"expected weight [3, C] or [3, C, k, k] (k odd) and bias [3], got {list(weight.shape)}, "
                f"{list(bias.shape)}"
            )
        if int(scale_factor) < 1 or smoothing < 0:
            raise ValueError(f"scale_factor must be >= 1 and smoothing >= 0, got {scale_factor}, {smoothing}")
        self.weight, self.bias = weight, bias
        self.scale_factor, self.smoothing = int(scale_factor), float(smoothing)
        # the coefficients cast once per (device, dtype): no host-to-device copy in every Adam step
        self._cast: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    @property
    def latent_channels(self) -> int:
        return self.weight.shape[1]

    @property
    def kernel_size(self) -> int:
        return self.weight.shape[2]

    def _params_like(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        key = (latent.device, latent.dtype)
        if key not in self._cast:
            self._cast[key] = (
                self.weight.to(latent.device, latent.dtype),
                self.bias.to(latent.device, latent.dtype),
            )
        return self._cast[key]

    def at_latent_resolution(self, latent: torch.Tensor) -> torch.Tensor:
        """The fitted colours before upsampling: [B,3,h,w]."""
        if latent.ndim != 4 or latent.shape[1] != self.latent_channels:
            raise ValueError(f"expected a latent [B,{self.latent_channels},h,w], got {list(latent.shape)}")
        weight, bias = self._params_like(latent)
        return F.conv2d(pad_for_kernel(latent, self.kernel_size), weight, bias)

    def __call__(self, latent: torch.Tensor) -> torch.Tensor:
        return spread(self.at_latent_resolution(latent), self.scale_factor, self.smoothing)

    def coefficients(self) -> dict:
        """Plain numbers, for caches and reports."""
        return {
            "weight": self.weight.tolist(),
            "bias": self.bias.tolist(),
            "scale_factor": self.scale_factor,
            "smoothing": self.smoothing,
        }

    @classmethod
    def from_coefficients(cls, data: dict) -> LinearLatentDecoder:
        return cls(
            torch.tensor(data["weight"]),
            torch.tensor(data["bias"]),
            data["scale_factor"],
            data.get("smoothing", 0.0),
        )

    def __repr__(self) -> str:
        return f"LinearLatentDecoder(channels={self.latent_channels}, scale_factor={self.scale_factor})"


def spread(x: torch.Tensor, scale_factor: int, smoothing: float = 0.0) -> torch.Tensor:
    """Bilinear upsampling by ``scale_factor``, then an optional Gaussian of std ``smoothing`` pixels."""
    if scale_factor > 1:
        x = F.interpolate(x, scale_factor=scale_factor, mode="bilinear", align_corners=False)
    if smoothing > 0:
        x = gaussian_blur(x, 2 * int(round(3 * smoothing)) + 1, smoothing)
    return x


def pad_for_kernel(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Replicate padding so a k x k kernel keeps the size (edges are not pulled towards black)."""
    pad = kernel_size // 2
    return F.pad(x, (pad, pad, pad, pad), mode="replicate") if pad else x


def area_downsample(image: torch.Tensor, factor: int) -> torch.Tensor:
    """Mean over each ``factor x factor`` patch: the decoder's output as seen by one latent pixel."""
    return F.avg_pool2d(image, factor) if factor > 1 else image


@torch.no_grad()
def fit_linear_decoder(
    decode: Decode,
    latents: torch.Tensor | Sequence[torch.Tensor],
    scale_factor: int,
    *,
    kernel_size: int = 3,
    ridge: float = 1e-6,
    smoothing: float = 0.0,
) -> LinearLatentDecoder:
    """Least-squares fit of ``W, b`` so that the decoder's output ``spread(conv(z, W) + b)`` matches
    ``decode(z)`` after both are area-averaged to latent resolution (all pixels and channels at once).

    ``kernel_size`` 1 is the per-pixel C x 3 map; 3 (the default) lets each latent pixel's neighbours
    contribute (36 numbers per colour for SD's 4 channels, still one small solve). On the tests' random
    VAE the 3x3 map's gradient is far closer to the decoder's (cosine 0.36 against 0.13), and Adam steps
    through it lower the full decoder's stroke loss where the 1x1 map's raise it.

    ``latents`` is a batch or a list of latents (sizes may differ), decoded one row at a time so a fit
    at 512^2 stays within inference memory. ``ridge`` (relative to the mean diagonal) keeps the solve
    finite when a channel is constant.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size: must be a positive odd integer, got {kernel_size}")
    batches = [latents] if isinstance(latents, torch.Tensor) else list(latents)
    inputs, targets = [], []
    for batch in batches:
        for row in batch.split(1):
            image = decode(row)
            targets.append(pixel_rows(area_downsample(image.double(), scale_factor)))
            inputs.append(design_rows(row, scale_factor, kernel_size, smoothing))
    x, y = torch.cat(inputs), torch.cat(targets)  # [N, C*k*k], [N, 3]
    design = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    gram = design.T @ design
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    solution = torch.linalg.solve(gram + ridge * gram.diagonal().mean() * eye, design.T @ y)  # [C*k*k + 1, 3]
    channels = x.shape[1] // (kernel_size * kernel_size)
    weight = solution[:-1].T.reshape(3, channels, kernel_size, kernel_size)
    return LinearLatentDecoder(weight.cpu(), solution[-1].cpu(), scale_factor, smoothing)


def pixel_rows(t: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> [B*h*w, C]."""
    return t.permute(0, 2, 3, 1).reshape(-1, t.shape[1])


def design_rows(
    latent: torch.Tensor, scale_factor: int, kernel_size: int, smoothing: float = 0.0
) -> torch.Tensor:
    """The least-squares inputs of a latent [B, C, h, w]: [B*h*w, C*k*k] (float64), each latent pixel's
    k x k neighbourhood in conv weight order (channel, then kernel row, then column).

    Taken from what the map's output looks like after spread + area mean: the upsampling mixes in the
    neighbours, so regressing on the raw latent would shrink the fitted map (by ~0.6 on noise)."""
    seen = area_downsample(spread(latent.double(), scale_factor, smoothing), scale_factor)
    patches = F.unfold(pad_for_kernel(seen, kernel_size), kernel_size)  # [B, C*k*k, h*w]
    return patches.transpose(1, 2).reshape(-1, patches.shape[1])


def smooth_colour_images(count: int, size: tuple[int, int], seed: int = 0, grid: int = 4) -> torch.Tensor:
    """Random smooth colour layouts [count,3,H,W] in [0,1]: the kind of image strokes describe."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(count, 3, grid, grid, generator=generator)
    return F.interpolate(coarse, size=size, mode="bicubic", align_corners=False).clamp(0, 1)


@torch.no_grad()
def typical_fit_latents(
    model, count: int = 8, latent_size: tuple[int, int] = (32, 32), seed: int = 0
) -> list[torch.Tensor]:
    """Half encoded smooth colour layouts (where strokes live), half unit Gaussian latents (what the
    sampler's early x0 predictions look like to the decoder). ``model`` needs ``encode`` and
    ``vae_scale_factor``; the latents are made on the model's device when it has one."""
    f = int(model.vae_scale_factor)
    channels = int(getattr(model, "latent_channels", 4))
    device = getattr(model, "device", torch.device("cpu"))
    generator = torch.Generator().manual_seed(seed)
    encoded = count // 2
    out = []
    if encoded:
        images = smooth_colour_images(encoded, (latent_size[0] * f, latent_size[1] * f), seed)
        out.append(model.encode(images.to(device)))
    if count - encoded:
        noise = torch.randn(count - encoded, channels, *latent_size, generator=generator)
        out.append(noise.to(device))
    return out
