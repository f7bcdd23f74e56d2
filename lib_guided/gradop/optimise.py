"""GradOP and GradOP+: pull a sample toward the user's strokes by gradient descent through a decoder.

The loss is ``MSE(f(decode(w)), y)`` with ``f`` a painting function and ``y`` the stroke image. Only
the latent receives gradients (``torch.autograd.grad`` on the latent alone), so this runs inside
``torch.no_grad()`` samplers and never touches model weights or their ``.grad``.

Half precision: the latent, the loss and Adam are float32 and outside any autocast region the sampler
runs in; the decoder runs in its own weights' dtype. The loss is a mean over pixels, so its gradient at
one pixel is ~1e-7..1e-10 at 512²..1024², below fp16's smallest subnormal (6e-8): the backward pass
through a half VAE would flush it to zero. It is therefore differentiated scaled by the image's pixel
count (a sum instead of a mean: per-pixel gradients of order 0.1); Adam's step does not depend on that
scale (up to its tiny eps).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from lib_guided.diffusion.sampler import StepHook, gaussian_like, noised_start, sample
from lib_guided.diffusion.schedules import model_input_scale, start_index_for_strength
from lib_guided.errors import GuidedInputError
from lib_guided.protocol import Cond, Decoder, DiffusionModel
from lib_guided.strokes.painting import stroke_loss

Painting = Callable[[torch.Tensor], torch.Tensor]

TARGETS = ("x0", "noisy")
# "adam": the paper's; "normalised": steepest descent scaled so each image's step has RMS lr
OPTIMISERS = ("adam", "normalised")


@dataclass(frozen=True)
class GradOPSettings:
    """GradOP+ knobs. Strength 0.8, K 3 and N 12 follow the reference; the step is the lab's pick:
    normalised steepest descent at lr 0.05 (README, "GradOP+ levers"). The paper's GradOP+ is
    ``GradOPSettings(optimiser="adam", lr=0.1)`` (:data:`PAPER`)."""

    strength: float = 0.8  # first injection step = int(steps * (1 - strength))
    injection_steps: int = 3  # K: sampling steps that get a gradient phase
    adam_steps: int = 12  # N: optimiser steps per gradient phase (the name is the paper's)
    lr: float = 0.05
    # "x0": optimise the model's clean prediction and re-noise it with the step's own noise
    # estimate; "noisy": the reference, which optimises the noisy latent as if it were clean.
    target: str = "x0"
    optimiser: str = "normalised"

    def __post_init__(self) -> None:
        checks = [
            ("strength", 0.0 <= self.strength <= 1.0, "must be in [0, 1]"),
            ("injection_steps", 0 <= self.injection_steps <= 1000, "must be in [0, 1000]"),
            ("adam_steps", 0 <= self.adam_steps <= 1000, "must be in [0, 1000]"),
            ("lr", 0.0 < self.lr <= 10.0, "must be in (0, 10]"),
            ("target", self.target in TARGETS, f"must be one of {', '.join(TARGETS)}"),
            ("optimiser", self.optimiser in OPTIMISERS, f"must be one of {', '.join(OPTIMISERS)}"),
        ]
        for name, ok, why in checks:
            if not ok:
                raise GuidedInputError(name, f"{why}, got {getattr(self, name)!r}")

    def injection_range(self, total_steps: int) -> range:
        """Absolute step indices with a gradient phase (never the last step, as in the reference)."""
        first = start_index_for_strength(total_steps, self.strength)
        return range(first, min(first + self.injection_steps, total_steps - 1))


PAPER = GradOPSettings(optimiser="adam", lr=0.1)


def optimise_latent(
    latent: torch.Tensor,
    target: torch.Tensor,
    decode: Decoder,
    painting: Painting,
    steps: int,
    lr: float,
    weight_mask: torch.Tensor | None = None,
    anchor: torch.Tensor | None = None,
    gamma: float = 0.0,
    should_stop: Callable[[], bool] | None = None,
    on_step: Callable[[int, int, torch.Tensor], None] | None = None,
    optimiser: str = "adam",
) -> tuple[torch.Tensor, float, float]:
    """Adam on the latent alone (fresh optimiser each call); returns ``(latent, loss_first, loss_last)``
    with ``latent`` in float32.

    ``anchor`` and ``gamma`` add GradOP's ``gamma * MSE(w, anchor)`` term that keeps ``w`` near the
    text-only sample. ``should_stop()`` is polled before every Adam step (Interrupt / Skip: the phase
    ends with what it has); ``on_step(n, steps, w)`` reports progress after step ``n`` (1-based).
    """
    losses: list[torch.Tensor] = []
    device_type = latent.device.type
    with torch.enable_grad(), torch.autocast(device_type, enabled=False):
        w = latent.detach().float().clone().requires_grad_(True)
        # once per phase, not per Adam step: on a GPU each .to() of a CPU tensor is a copy
        target = target.to(device=w.device, dtype=torch.float32)
        if weight_mask is not None:
            weight_mask = weight_mask.to(device=w.device, dtype=torch.float32)
        adam = torch.optim.Adam([w], lr=lr) if optimiser == "adam" else None
        start_phase = getattr(decode, "start_phase", None)
        if start_phase is not None:  # decoders that anchor on the phase's first latent
            start_phase(w.detach())
        for n in range(steps):
            if should_stop is not None and should_stop():
                break
            image = decode(w).float().clamp(0.0, 1.0)
            if not image.requires_grad:
                raise RuntimeError(
                    "gradop: the decoder returned an image without a gradient: it runs under no_grad (a "
                    "tiling VAE such as Tiled VAE replaces the decoder so); pick the linear-anchored or "
                    "linear decoder, or switch the tiling off"
                )
            loss = stroke_loss(painting, image, target, weight_mask)
            if anchor is not None and gamma > 0.0:
                loss = loss + gamma * torch.mean((w - anchor) ** 2)
            (w.grad,) = torch.autograd.grad(loss * float(image[0, 0].numel()), [w])
            if adam is not None:
                adam.step()
            else:
                with torch.no_grad():
                    rms = w.grad.pow(2).mean(dim=tuple(range(1, w.ndim)), keepdim=True).sqrt()
                    w -= lr * w.grad / rms.clamp_min(1e-12)
            losses.append(loss.detach())
            if on_step is not None:
                on_step(n + 1, steps, w.detach())
    # one host sync per phase: a non-finite gradient makes w non-finite, so checking w catches it
    if not bool(torch.isfinite(w).all()):
        raise FloatingPointError(
            "gradop: the stroke loss gradient is not finite (NaN/inf); a half-precision VAE can overflow "
            "(run the VAE in float32, e.g. the WebUI's --no-half-vae, or use a linear-anchored decoder)"
        )
    values = torch.stack(losses).tolist() if losses else [float("nan")]
    return w.detach(), values[0], values[-1]


@dataclass
class GradOPPlus(StepHook):
    """GradOP+: K gradient phases early in one sampling pass.

    One object serves every host: the core sampler calls it as a :class:`StepHook`; a host with its own
    sampler (the WebUI) asks :meth:`wants` at each model call and hands the x0 prediction to
    :meth:`optimise`.
    """

    settings: GradOPSettings
    target: torch.Tensor  # stroke image [1 or B, 3, H, W] in [0, 1] at output resolution
    decode: Decoder
    painting: Painting
    total_steps: int
    weight_mask: torch.Tensor | None = None  # painted pixels; None = every pixel counts
    generator: torch.Generator | None = None
    history: list[tuple[int, float, float]] = field(default_factory=list)  # (step, loss_in, loss_out)
    stop: Callable[[], bool] | None = None  # Interrupt / Skip, polled before every Adam step
    # progress(phase, phases, adam_step, adam_steps, latent) after every Adam step
    progress: Callable[[int, int, int, int, torch.Tensor], None] | None = None

    def wants(self, step: int) -> bool:
        """Whether ``step`` gets a phase; once per step (second-order samplers call the model twice)."""
        if self.settings.adam_steps <= 0 or step not in self.settings.injection_range(self.total_steps):
            return False
        return all(done != step for done, _, _ in self.history)

    def optimise(self, step: int, latent: torch.Tensor) -> torch.Tensor:
        """One gradient phase on ``latent``; returned in the latent's own dtype."""
        s = self.settings
        on_step = None
        if self.progress is not None:
            phases = len(s.injection_range(self.total_steps))
            on_step = functools.partial(self.progress, len(self.history) + 1, phases)
        w, first, last = optimise_latent(
            latent,
            self.target,
            self.decode,
            self.painting,
            s.adam_steps,
            s.lr,
            self.weight_mask,
            should_stop=self.stop,
            on_step=on_step,
            optimiser=s.optimiser,
        )
        self.history.append((step, first, last))
        return w.to(latent.dtype)

    def on_denoised(self, step, sigma, x, x0, eps):
        if self.settings.target != "x0" or not self.wants(step):
            return x0
        # the sampler re-noises the returned x0 with this step's eps: x_next = w + sigma_next * eps
        return self.optimise(step, x0)

    def after_step(self, step, sigma_next, x_next):
        if self.settings.target != "noisy" or not self.wants(step) or sigma_next <= 0.0:
            return x_next
        # reference: decode the DDPM-scaled noisy latent as if clean, then add fresh noise at sigma_next
        w = self.optimise(step, model_input_scale(x_next, sigma_next))
        return w + sigma_next * gaussian_like(w, self.generator)


def gradop_relaxed(
    model: DiffusionModel,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    cond: Cond,
    uncond: Cond | None,
    scale: float,
    target: torch.Tensor,
    decode: Decoder,
    painting: Painting,
    *,
    strength: float = 0.8,
    opt_steps: int = 50,
    lr: float = 0.1,
    gamma: float = 1e-3,
    weight_mask: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    hooks: tuple[StepHook, ...] = (),
    optimiser: str = "adam",
) -> tuple[torch.Tensor, float, float]:
    """GradOP: text-only sample, ``argmin L(f(D(w)), y) + gamma |w - x_text|^2``, noise to the
    strength's step and denoise again (about 1 + strength sampling passes).

    ``noise`` is unit Gaussian noise for the text-only pass. Returns (latent, loss_first, loss_last).
    """
    x_text = sample(model, noise * float(sigmas[0]), sigmas, cond, uncond, scale, hooks=hooks)
    w, first, last = optimise_latent(
        x_text,
        target,
        decode,
        painting,
        opt_steps,
        lr,
        weight_mask,
        anchor=x_text,
        gamma=gamma,
        optimiser=optimiser,
    )
    steps = len(sigmas) - 1
    start = start_index_for_strength(steps, strength)
    if start >= steps:
        return w, first, last
    x = noised_start(w, float(sigmas[start]), generator)
    out = sample(model, x, sigmas[start:], cond, uncond, scale, hooks=hooks, first_step=start)
    return out, first, last
