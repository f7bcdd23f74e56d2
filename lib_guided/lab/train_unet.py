"""Diffusion stage of the lab training: text encoder + UNet, epsilon-prediction DDPM loss on cached latents.

Captions are dropped to the empty prompt 10% of the time, so "" is the unconditional prompt for
classifier-free guidance, exactly as in SD. The EMA covers the UNet and the text encoder together so
the averaged UNet is paired with the text features it was averaged against.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from lib_guided.lab.optim import EMA, make_optimizer
from lib_guided.lab.train_vae import to_model_range


@torch.no_grad()
def encode_latents(vae, images_u8: np.ndarray, batch: int = 256):
    """Posterior mean and std of every image, unscaled (the scaling factor is applied when training)."""
    vae.eval()
    means, stds = [], []
    for i in range(0, len(images_u8), batch):
        dist = vae.encode(to_model_range(images_u8[i : i + batch])).latent_dist
        means.append(dist.mean)
        stds.append(dist.std)
    return torch.cat(means), torch.cat(stds)


def tokenize(tokenizer, captions: list[str]) -> torch.Tensor:
    """SD-style ids: BOS, words, EOS, padded with EOS to the tokenizer's max length."""
    return tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


def diffusion_loss(unet, text_encoder, scheduler, latents, ids, gen: torch.Generator):
    noise = torch.randn(latents.shape, generator=gen)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=gen)
    noisy = scheduler.add_noise(latents, noise, t)
    context = text_encoder(ids).last_hidden_state
    pred = unet(noisy, t, encoder_hidden_states=context).sample
    return torch.mean((pred - noise) ** 2)


def train_unet(unet, text_encoder, scheduler, latent_mean, latent_std, ids, empty_ids, scaling_factor: float,
               steps: int, log, gen: torch.Generator, *, batch: int = 32, lr: float = 5e-4,
               caption_dropout: float = 0.1, ema_decay: float = 0.999, log_every: int = 50,
               checkpoint=None, checkpoint_every: int = 1000, deadline: float | None = None):
    """Train in place; returns (EMA ModuleDict {"unet", "text_encoder"}, steps done).

    ``checkpoint(ema_modules, step)`` is called every ``checkpoint_every`` steps. Past ``deadline``
    (a ``time.time()`` value) training stops early, keeping the EMA weights reached so far: a busy
    machine then costs quality, not the time budget.
    """
    models = torch.nn.ModuleDict({"unet": unet, "text_encoder": text_encoder}).train()
    opt, sched = make_optimizer(models.parameters(), lr, steps, warmup=min(500, steps // 10 + 1))
    ema = EMA(models, ema_decay)
    running, started, done = None, time.time(), 0
    for step in range(steps):
        if deadline is not None and time.time() > deadline:
            log(f"unet: time budget reached, stopping after {step} of {steps} steps")
            break
        done = step + 1
        idx = torch.randint(0, len(latent_mean), (batch,), generator=gen)
        eps = torch.randn(latent_mean[idx].shape, generator=gen)
        latents = (latent_mean[idx] + latent_std[idx] * eps) * scaling_factor
        batch_ids = ids[idx].clone()
        dropped = torch.rand(batch, generator=gen) < caption_dropout
        batch_ids[dropped] = empty_ids
        loss = diffusion_loss(unet, text_encoder, scheduler, latents, batch_ids, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(models.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.update(models)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % log_every == 0 or step == steps - 1:
            log(f"unet step {step}/{steps} loss {running:.4f} (last {loss.item():.4f}) "
                f"lr {sched.get_last_lr()[0]:.2e} {(time.time() - started) / (step + 1):.3f} s/step")
        if checkpoint is not None and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            checkpoint(ema.model, step + 1)
    models.eval()
    return ema.model, done
