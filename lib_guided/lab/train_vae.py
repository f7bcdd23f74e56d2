"""VAE stage of the lab training: reconstruction (MSE + edge L1) with a weak KL, mostly on crops.

The autoencoder is convolutional apart from its 16x16 mid-block attention, so most steps use random
32x32 crops (4x cheaper); the last part of the run uses whole 64x64 images so that the attention and
the group norms see the statistics they will meet at inference.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from lib_guided.lab.optim import make_optimizer


def to_model_range(images_u8: np.ndarray) -> torch.Tensor:
    """uint8 NHWC -> float NCHW in [-1, 1], SD's image range."""
    return torch.from_numpy(np.ascontiguousarray(images_u8)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """float NCHW in [-1, 1] -> uint8 NHWC."""
    x = ((images.clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def sample_batch(images: np.ndarray, batch: int, crop: int, gen: torch.Generator) -> torch.Tensor:
    idx = torch.randint(0, len(images), (batch,), generator=gen).numpy()
    size = images.shape[1]
    if crop >= size:
        return to_model_range(images[idx])
    offs = torch.randint(0, size - crop + 1, (batch, 2), generator=gen).numpy()
    crops = np.stack([images[i, y : y + crop, x : x + crop] for i, (y, x) in zip(idx, offs, strict=True)])
    return to_model_range(crops)


def edge_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between finite differences: keeps outlines and texture crisp where MSE alone blurs."""
    dx = (pred[..., :, 1:] - pred[..., :, :-1]) - (target[..., :, 1:] - target[..., :, :-1])
    dy = (pred[..., 1:, :] - pred[..., :-1, :]) - (target[..., 1:, :] - target[..., :-1, :])
    return dx.abs().mean() + dy.abs().mean()


def vae_loss(vae, x: torch.Tensor, kl_weight: float, edge_weight: float):
    posterior = vae.encode(x).latent_dist
    recon = vae.decode(posterior.sample()).sample
    mse = torch.mean((recon - x) ** 2)
    kl = posterior.kl().mean() / posterior.mean[0].numel()  # per latent element
    loss = mse + edge_weight * edge_l1(recon, x) + kl_weight * kl
    return loss, mse, kl


@torch.no_grad()
def reconstruction_psnr(vae, images_u8: np.ndarray, batch: int = 64) -> float:
    """PSNR (dB, uint8 scale) of decode(posterior mean) on whole images: the ceiling for inversion."""
    vae.eval()
    errors = []
    for i in range(0, len(images_u8), batch):
        clean = images_u8[i : i + batch]
        recon = to_uint8(vae.decode(vae.encode(to_model_range(clean)).latent_dist.mode()).sample)
        errors.append(((recon.astype(np.float64) - clean) ** 2).reshape(len(clean), -1).mean(1))
    mse = np.concatenate(errors)
    return float(np.mean(10.0 * np.log10(255.0**2 / np.maximum(mse, 1e-10))))


def train_vae(
    vae,
    images: np.ndarray,
    steps: int,
    log,
    gen: torch.Generator,
    *,
    batch: int = 32,
    crop: int = 32,
    full_batch: int = 16,
    full_fraction: float = 0.25,
    lr: float = 1e-3,
    kl_weight: float = 1e-5,
    edge_weight: float = 0.5,
    log_every: int = 50,
    checkpoint=None,
    checkpoint_every: int = 1000,
    budget_seconds: float | None = None,
):
    """Train ``vae`` in place on uint8 ``images``; ``checkpoint(vae)`` is called periodically.

    With ``budget_seconds``, a slow (busy) machine moves to the whole-image phase after 65% of the
    budget and stops at the end of it, instead of overrunning the training budget.
    """
    vae.train()
    opt, sched = make_optimizer(vae.parameters(), lr, steps, warmup=min(200, steps // 10 + 1))
    full_from = int(steps * (1.0 - full_fraction))
    running, started = None, time.time()
    budget = float("inf") if budget_seconds is None else budget_seconds
    for step in range(steps):
        spent = time.time() - started
        if spent > budget:
            log(f"vae: time budget reached, stopping after {step} of {steps} steps")
            break
        whole = step >= full_from or spent > 0.65 * budget
        x = sample_batch(images, full_batch if whole else batch, images.shape[1] if whole else crop, gen)
        loss, mse, kl = vae_loss(vae, x, kl_weight, edge_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        sched.step()
        stats = np.array([loss.item(), mse.item(), kl.item()])
        running = stats if running is None else 0.9 * running + 0.1 * stats
        if step % log_every == 0 or step == steps - 1:
            psnr = 10 * np.log10(4.0 / max(running[1], 1e-10))
            log(
                f"vae step {step}/{steps} loss {running[0]:.5f} mse {running[1]:.5f} (~{psnr:.1f} dB) "
                f"kl {running[2]:.3f} lr {sched.get_last_lr()[0]:.2e} {'full' if whole else 'crop'} "
                f"{(time.time() - started) / (step + 1):.3f} s/step"
            )
        if checkpoint is not None and (step + 1) % checkpoint_every == 0:
            checkpoint(vae)
    vae.eval()
    return vae
