"""Diffusion stage of the lab training: text encoder + UNet, epsilon-prediction DDPM loss on cached latents.

Captions are dropped to the empty prompt 10% of the time, so "" is the unconditional prompt for
classifier-free guidance, exactly as in SD. The EMA covers the UNet and the text encoder together so
the averaged UNet is paired with the text features it was averaged against.

The loss can be min-SNR-gamma weighted (Hang et al. 2023): for epsilon prediction each timestep's MSE
is scaled by min(SNR, gamma) / SNR, so the many low-noise steps, which only teach texture, stop
dominating the gradient over the high-noise steps where layout (what the caption says) is decided.

Training state (weights, EMA, optimiser, LR schedule, RNG, step) goes to a state folder outside the
shipped model, so a run killed at any point resumes from its last checkpoint with ``--resume``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from lib_guided.lab.optim import EMA, make_optimizer
from lib_guided.lab.train_vae import to_model_range

STATE_FILE = "train_state.pt"


@torch.no_grad()
def encode_latents(vae, images_u8: np.ndarray, batch: int = 256):
    """Posterior mean and std of every image, unscaled (the scaling factor is applied when training)."""
    vae.eval()
    device = next(vae.parameters()).device
    means, stds = [], []
    for i in range(0, len(images_u8), batch):
        dist = vae.encode(to_model_range(images_u8[i : i + batch]).to(device)).latent_dist
        means.append(dist.mean.cpu())
        stds.append(dist.std.cpu())
    return torch.cat(means), torch.cat(stds)


def tokenize(tokenizer, captions: list[str]) -> torch.Tensor:
    """SD-style ids: BOS, words, EOS, padded with EOS to the tokenizer's max length."""
    return tokenizer(
        captions,
        padding="max_length",
        max_length=tokenizer.model_max_length,
        truncation=True,
        return_tensors="pt",
    ).input_ids


def min_snr_weights(scheduler, t: torch.Tensor, gamma: float | None) -> torch.Tensor:
    """Per-sample loss weight min(SNR, gamma) / SNR for epsilon prediction (1 everywhere when off)."""
    if not gamma:
        return torch.ones(len(t))
    abar = scheduler.alphas_cumprod[t]
    snr = abar / (1.0 - abar)
    return torch.clamp(snr, max=gamma) / snr


def diffusion_loss(
    unet, text_encoder, scheduler, latents, ids, gen: torch.Generator, min_snr_gamma: float | None = None
):
    noise = torch.randn(latents.shape, generator=gen)
    t = torch.randint(0, scheduler.config.num_train_timesteps, (len(latents),), generator=gen)
    noisy = scheduler.add_noise(latents, noise, t)
    device = next(unet.parameters()).device
    context = text_encoder(ids.to(device)).last_hidden_state
    pred = unet(noisy.to(device), t.to(device), encoder_hidden_states=context).sample
    per_sample = ((pred - noise.to(device)) ** 2).mean(dim=(1, 2, 3))
    return (per_sample * min_snr_weights(scheduler, t, min_snr_gamma).to(device)).mean()


def save_state(
    folder: Path,
    models,
    ema: EMA,
    opt,
    sched,
    gen: torch.Generator,
    step: int,
    seconds: float,
    lineage: dict | None = None,
) -> None:
    """Everything needed to continue bit-for-bit, written to a temporary file and then swapped in.
    ``lineage`` (e.g. the steps of the run the weights were initialised from) travels with it."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "seconds": seconds,
        "lineage": lineage or {},
        "models": models.state_dict(),
        "ema": ema.model.state_dict(),
        "ema_updates": ema.updates,
        "opt": opt.state_dict(),
        "sched": sched.state_dict(),
        "gen": gen.get_state(),
    }
    tmp = folder / (STATE_FILE + ".saving")
    torch.save(state, tmp)
    tmp.replace(folder / STATE_FILE)


def state_lineage(folder: str | Path | None) -> dict | None:
    """The lineage saved with a training state, or None when there is no state."""
    path = Path(folder) / STATE_FILE if folder is not None else None
    if path is None or not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True).get("lineage", {})


def load_state(folder: Path, models, ema: EMA, opt, sched, gen: torch.Generator) -> tuple[int, float]:
    """Restore a state written by save_state; returns (step to continue from, training seconds so far),
    (0, 0.0) when there is none."""
    path = folder / STATE_FILE
    if not path.is_file():
        return 0, 0.0
    state = torch.load(path, map_location="cpu", weights_only=True)
    models.load_state_dict(state["models"])
    ema.model.load_state_dict(state["ema"])
    ema.updates = state["ema_updates"]
    opt.load_state_dict(state["opt"])
    sched.load_state_dict(state["sched"])
    gen.set_state(state["gen"])
    return int(state["step"]), float(state["seconds"])


def train_unet(
    unet,
    text_encoder,
    scheduler,
    latent_mean,
    latent_std,
    ids,
    empty_ids,
    scaling_factor: float,
    steps: int,
    log,
    gen: torch.Generator,
    *,
    batch: int = 32,
    lr: float = 5e-4,
    caption_dropout: float = 0.1,
    ema_decay: float = 0.999,
    log_every: int = 50,
    checkpoint=None,
    checkpoint_every: int = 1000,
    deadline: float | None = None,
    min_snr_gamma: float | None = None,
    state_dir: str | Path | None = None,
    warmup: int | None = None,
    lineage: dict | None = None,
):
    """Train in place; returns (EMA ModuleDict {"unet", "text_encoder"}, steps done, training seconds),
    both counted over every resumed sitting.

    ``checkpoint(ema_modules, step, seconds)`` is called every ``checkpoint_every`` steps, and the full
    training state is saved to ``state_dir`` then too (and loaded from it first, when it holds one). Past
    ``deadline`` (a ``time.time()`` value) training stops early, keeping the EMA weights reached so far:
    a busy machine then costs quality, not the time budget.
    """
    models = torch.nn.ModuleDict({"unet": unet, "text_encoder": text_encoder}).train()
    warmup = min(500, steps // 10 + 1) if warmup is None else warmup
    opt, sched = make_optimizer(models.parameters(), lr, steps, warmup=warmup)
    ema = EMA(models, ema_decay)
    state_dir = Path(state_dir) if state_dir is not None else None
    first, before = load_state(state_dir, models, ema, opt, sched, gen) if state_dir is not None else (0, 0.0)
    if first:
        log(f"unet: resumed from {state_dir / STATE_FILE} at step {first}")
    running, started, done = None, time.time(), first
    for step in range(first, steps):
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
        loss = diffusion_loss(unet, text_encoder, scheduler, latents, batch_ids, gen, min_snr_gamma)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(models.parameters(), 1.0)
        opt.step()
        sched.step()
        ema.update(models)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if step % log_every == 0 or step == steps - 1:
            log(
                f"unet step {step}/{steps} loss {running:.4f} (last {loss.item():.4f}) "
                f"lr {sched.get_last_lr()[0]:.2e} {(time.time() - started) / (step + 1 - first):.3f} s/step"
            )
        if (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            if state_dir is not None:
                save_state(
                    state_dir, models, ema, opt, sched, gen, step + 1, before + time.time() - started, lineage
                )
            if checkpoint is not None:
                checkpoint(ema.model, step + 1, before + time.time() - started)
    seconds = before + time.time() - started
    if state_dir is not None:
        save_state(state_dir, models, ema, opt, sched, gen, done, seconds, lineage)
    models.eval()
    return ema.model, done, seconds
