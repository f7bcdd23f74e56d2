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

from lib_guided.adapters.webui.host import WEBUI
from lib_guided.diffusion.schedules import timestep_to_sigma
from lib_guided.gradop.optimise import GradOPPlus
from lib_guided.regions.attention import RegionControl, controlled_attention


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
    host=None,
) -> Iterator[None]:
    """Patch ``sampler.model_wrap_cfg.forward`` (and attention, with a UNet pre-hook) for one call.

    ``current_step()`` is read before the wrapped forward runs: the sampling step this model call
    belongs to. Another extension's instance-level forward on the denoiser is chained, not skipped.
    ``host`` (default: the WebUI's) says how rows are tracked and where gradients may be taken.
    """
    host = host or WEBUI
    denoiser = sampler.model_wrap_cfg
    original_forward = denoiser.__dict__.get("forward")
    inner_forward = original_forward or functools.partial(type(denoiser).forward, denoiser)
    table = model.sigma_table
    alphas = 1.0 / (1.0 + table**2)
    tracker = host.row_tracker(control) if control is not None else None

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
                with host.autograd():
                    w = gradop.optimise(step, x0)
                x.add_(a.sqrt() * (w - x0))
                return out
            with host.autograd():
                w = gradop.optimise(step, out)
            x.add_(w - out)
            return w

    if control is not None:
        _refuse_foreign_attention(host.foreign_attention(model))
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


def _refuse_foreign_attention(foreign: list[str]) -> None:
    """Region control computes the conditional rows' cross-attention itself; another extension's
    attn2 replacement (Regional Prompter's attention mode, IP-Adapter) would be bypassed on those rows,
    silently. Say so before anything is patched."""
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
