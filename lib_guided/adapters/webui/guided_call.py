"""Install GradOP+ and region control for exactly one WebUI sampler call, and undo it in ``finally``.

The WebUI's ``on_cfg_after_cfg`` callback can replace the x0 prediction but not the sampler's latent,
so GradOP would only move a fraction of the way. Instead the per-run CFG denoiser's ``forward`` is
wrapped: after an injection step it shifts the sampler's own ``x`` in place by ``w - x0`` and returns
``w``, so every first-order sampler lands on ``w + sigma_next * eps`` as the core's sampler does.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

from lib_guided.diffusion.schedules import timestep_to_sigma
from lib_guided.gradop.optimise import GradOPPlus
from lib_guided.regions.attention import RegionControl, controlled_attention


class CondRowTracker:
    """Tells region control which rows of each UNet call are conditional.

    The CFG denoiser puts all cond rows first; with ``batch_cond_uncond`` off it calls the UNet in
    chunks, so the rows of a call are located by a running offset.
    """

    def __init__(self, control: RegionControl):
        self.control = control
        self.n_cond = 0
        self.offset = 0
        self.sigma = 0.0

    def start(self, n_cond: int, sigma: float) -> None:
        self.n_cond, self.offset, self.sigma = n_cond, 0, sigma

    def before_unet(self, module, args, kwargs) -> None:
        x = args[0] if args else kwargs["x"]
        if tuple(x.shape[-2:]) != tuple(self.control.latent_size):
            raise RuntimeError(
                f"Guided Synthesis: region control needs the whole {self.control.latent_size[0]}x"
                f"{self.control.latent_size[1]} latent in each UNet call, got a {x.shape[-2]}x{x.shape[-1]} "
                "tile (a tiling extension such as Tiled Diffusion splits it); switch tiling off or set "
                "the region weight to 0"
            )
        rows = torch.arange(self.offset, self.offset + x.shape[0]) < self.n_cond
        self.offset += x.shape[0]
        self.control.set_step(self.sigma, cond_rows=rows.to(x.device))


def _count_cond_rows(cond, batch: int) -> int:
    """Cond rows in the denoiser's batch: one per AND-subprompt of every image."""
    multicond = getattr(cond, "batch", None)
    return sum(len(c) for c in multicond) if multicond is not None else batch


@contextlib.contextmanager
def guided_sampler_call(
    sampler,
    model,
    gradop: GradOPPlus | None,
    control: RegionControl | None,
    timestep_sampler: bool,
    current_step,
) -> Iterator[None]:
    """Patch ``sampler.model_wrap_cfg.forward`` (and attention, with a UNet pre-hook) for one call.

    ``current_step()`` is read before the wrapped forward runs: the sampling step this model call
    belongs to. Another extension's instance-level forward on the denoiser is chained, not skipped.
    """
    denoiser = sampler.model_wrap_cfg
    original_forward = denoiser.__dict__.get("forward")
    inner_forward = original_forward or functools.partial(type(denoiser).forward, denoiser)
    table = model.sigma_table
    alphas = 1.0 / (1.0 + table**2)
    tracker = CondRowTracker(control) if control is not None else None

    def forward(x, sigma, *args, **kwargs):
        if timestep_sampler:
            k_sigma = float(timestep_to_sigma(sigma[:1].double().cpu(), table)[0])
        else:
            k_sigma = float(sigma[0])
        if tracker is not None:
            tracker.start(_count_cond_rows(kwargs.get("cond"), x.shape[0]), k_sigma)
        step = current_step()
        out = inner_forward(x, sigma, *args, **kwargs)
        if gradop is None or not gradop.wants(step):
            return out
        with torch.no_grad():
            if timestep_sampler:
                # DDIM / PLMS / UniPC: x is the DDPM latent and out is eps
                a = alphas[sigma.long().cpu()].to(x).view(-1, 1, 1, 1)
                x0 = (x - (1 - a).sqrt() * out) / a.sqrt()
                w = gradop.optimise(step, x0)
                x.add_(a.sqrt() * (w - x0))
                return out
            w = gradop.optimise(step, out)
            x.add_(w - out)
            return w

    if control is not None:
        _refuse_foreign_attention(model)
    hook = None
    with contextlib.ExitStack() as stack:
        try:
            denoiser.forward = forward
            if control is not None:
                hook = model.unet.register_forward_pre_hook(tracker.before_unet, with_kwargs=True)
                stack.enter_context(controlled_attention(model.attention_modules(), control))
            yield
        finally:
            if hook is not None:
                hook.remove()
            if original_forward is None:
                denoiser.__dict__.pop("forward", None)
            else:
                denoiser.forward = original_forward


def _refuse_foreign_attention(model) -> None:
    """Region control computes the conditional rows' cross-attention itself; another extension's
    instance-level attn2 forward (Regional Prompter's attention mode, IP-Adapter) would be bypassed on
    those rows, silently. Say so before anything is patched."""
    foreign = [name for name, module in model.attention_modules() if "forward" in module.__dict__]
    if foreign:
        raise RuntimeError(
            "Guided Synthesis: region control cannot run while another extension replaces the "
            f"cross-attention ({foreign[0]} and {len(foreign) - 1} more); its effect would be lost on the "
            "prompt's rows. Set the region weight to 0 (stroke guidance still works) or switch that "
            "extension's attention mode off"
        )


def denoiser_step(denoiser) -> int:
    """The sampling step of the denoiser's next call, from its own call counter (``step``, counted from 0
    per sampling) and the calls per step its sampler makes (``total_steps / steps``: 2 for Heun, DPM2).

    ``shared.state.sampling_step`` is set only after each step's callback: read during a model call it
    is one step behind, which made every gradient phase run a step late.
    """
    steps = int(getattr(denoiser, "steps", None) or 0)
    calls = int(getattr(denoiser, "total_steps", None) or 0)
    if steps <= 0 or calls <= 0:
        return int(denoiser.step)
    return int(denoiser.step) * steps // max(calls, steps)
