"""Shared cases of the gradient-decoder tests: the tiny model's sizes, a two-colour target, seeded
latents, and the stroke-loss gradient and loss they are judged by."""

import torch
import torch.nn.functional as F

from lib_guided.strokes.painting import BlurPainting, stroke_loss

SIZE = 64  # tiny model: 64x64 images, 8x8 latents


def two_colour_target() -> torch.Tensor:
    target = torch.empty(1, 3, SIZE, SIZE)
    target[..., : SIZE // 2] = torch.tensor([0.85, 0.2, 0.2]).view(1, 3, 1, 1)
    target[..., SIZE // 2 :] = torch.tensor([0.2, 0.3, 0.8]).view(1, 3, 1, 1)
    return target


def latent(seed: int, batch: int = 1) -> torch.Tensor:
    return torch.randn(batch, 4, SIZE // 8, SIZE // 8, generator=torch.Generator().manual_seed(seed))


def loss_gradient(decode, w: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    x = w.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(stroke_loss(BlurPainting(), decode(x).clamp(0, 1), target), [x])
    return grad


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten(), b.flatten(), dim=0))


@torch.no_grad()
def blurred_error(decode_a, decode_b, latents: list[torch.Tensor]) -> float:
    blur = BlurPainting()
    errors = [
        float(((blur(decode_a(z).clamp(0, 1)) - blur(decode_b(z).clamp(0, 1))) ** 2).mean()) for z in latents
    ]
    return sum(errors) / len(errors)


def full_decoder_loss(model, w: torch.Tensor, target: torch.Tensor) -> float:
    with torch.no_grad():
        return float(stroke_loss(BlurPainting(), model.decode(w).clamp(0, 1), target))
