"""Noise schedules and parameterisation conversions in k-diffusion sigma space.

Sigma space: ``x = x0 + sigma * eps``. A DDPM latent ``z_t = sqrt(abar) x0 + sqrt(1 - abar) eps`` is
``x / sqrt(1 + sigma^2)`` with ``sigma = sqrt((1 - abar) / abar)``. DDIM is Euler in this space.
"""

from __future__ import annotations

import torch


def scaled_linear_alphas_cumprod(
    num_train_timesteps: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012
) -> torch.Tensor:
    """The Stable Diffusion 1.x / 2.x / XL training schedule (float64 for exact round trips)."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_train_timesteps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def sigmas_from_alphas_cumprod(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    return ((1.0 - alphas_cumprod) / alphas_cumprod).sqrt()


def alphas_cumprod_from_sigmas(sigmas: torch.Tensor) -> torch.Tensor:
    return 1.0 / (1.0 + sigmas**2)


def sigma_to_timestep(sigma: torch.Tensor, sigma_table: torch.Tensor) -> torch.Tensor:
    """Continuous timestep for ``sigma`` by linear interpolation in log-sigma (as k-diffusion does).

    Exact table sigmas map to integer timesteps; values outside the table are clamped to its ends.
    """
    log_table = sigma_table.to(torch.float64).log()
    log_sigma = sigma.to(torch.float64).clamp(sigma_table[0].item(), sigma_table[-1].item()).log()
    idx = torch.searchsorted(log_table, log_sigma.reshape(-1).contiguous()).clamp(1, len(log_table) - 1)
    low, high = log_table[idx - 1], log_table[idx]
    frac = ((log_sigma.reshape(-1) - low) / (high - low)).clamp(0.0, 1.0)
    out_dtype = sigma.dtype if sigma.is_floating_point() else torch.float32
    return (idx - 1 + frac).reshape(sigma.shape).to(out_dtype)


def timestep_to_sigma(timestep: torch.Tensor, sigma_table: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`sigma_to_timestep` (log-linear interpolation between table entries)."""
    t = timestep.to(torch.float64).clamp(0, len(sigma_table) - 1)
    low = t.floor().long()
    high = t.ceil().long()
    frac = t - low
    log_table = sigma_table.to(torch.float64).log()
    return ((1 - frac) * log_table[low] + frac * log_table[high]).exp()


def ddim_timesteps(steps: int, num_train_timesteps: int = 1000, offset: int = 1) -> torch.Tensor:
    """Descending DDIM timesteps with "leading" spacing and SD's steps_offset=1 (diffusers, WebUI DDIM)."""
    if not 1 <= steps <= num_train_timesteps:
        raise ValueError(f"steps: must be in [1, {num_train_timesteps}], got {steps}")
    stride = num_train_timesteps // steps
    ts = torch.arange(steps, dtype=torch.int64) * stride + offset
    return ts.clamp(max=num_train_timesteps - 1).flip(0)


def ddim_sigmas(steps: int, sigma_table: torch.Tensor, offset: int = 1) -> torch.Tensor:
    """Descending sampling sigmas for ``steps`` DDIM steps, with a final 0 (the clean sample)."""
    ts = ddim_timesteps(steps, len(sigma_table), offset)
    return torch.cat([sigma_table[ts].to(torch.float64), torch.zeros(1, dtype=torch.float64)])


def start_index_for_strength(steps: int, strength: float) -> int:
    """First sampling step of an img2img run (diffusers/reference convention: skip the rest)."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength: must be in [0, 1], got {strength}")
    return steps - min(int(steps * strength), steps)


# -- parameterisations ------------------------------------------------------------------------------
# a = sqrt(abar) = 1/sqrt(1+sigma^2), s = sqrt(1-abar) = sigma/sqrt(1+sigma^2); z = a x0 + s eps.


def _a_s(sigma: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    sigma = _broadcast(sigma, like)
    a = 1.0 / (1.0 + sigma**2).sqrt()
    return a, sigma * a


def _broadcast(sigma: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    sigma = torch.as_tensor(sigma, dtype=like.dtype, device=like.device)
    return sigma.reshape(-1, *([1] * (like.ndim - 1))) if sigma.ndim else sigma


def model_input_scale(x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """The DDPM-space latent ``z_t`` a UNet expects, from the sigma-space ``x``."""
    a, _ = _a_s(sigma, x)
    return x * a


def eps_to_x0(x: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    return x - _broadcast(sigma, x) * eps


def x0_to_eps(x: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    return (x - x0) / _broadcast(sigma, x)


def v_to_eps(z: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """eps from a v-prediction; ``z`` is the DDPM-space latent the UNet saw (SD 2.x 768 models)."""
    a, s = _a_s(sigma, z)
    return s * z + a * v


def v_to_x0(z: torch.Tensor, v: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    a, s = _a_s(sigma, z)
    return a * z - s * v


def eps_to_v(z: torch.Tensor, eps: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    a, s = _a_s(sigma, z)
    x0 = (z - s * eps) / a
    return a * eps - s * x0
