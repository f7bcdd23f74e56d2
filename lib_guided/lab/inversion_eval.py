"""Inversion on the lab's test scenes: PSNR / SSIM of the round trip and the model evaluations it cost."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lib_guided.bench.inversion_report import measure_inversion
from lib_guided.inversion.editing import reconstruct
from lib_guided.inversion.invert import InversionSettings, invert
from lib_guided.lab.eval_scenes import stack_images
from lib_guided.lab.metrics import ssim
from lib_guided.lab.world import Scene
from lib_guided.protocol import DiffusionModel


def _ssim(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(ssim(a, b).mean())


def measure(
    model: DiffusionModel,
    scenes: Sequence[Scene],
    solvers: Sequence[str],
    steps_list: Sequence[int],
    **settings,
) -> dict:
    """measure_inversion on the scenes' images with their captions as prompts (inversion CFG 1);
    ``settings`` go to InversionSettings (tol, max_iter, ...)."""
    return measure_inversion(
        model,
        stack_images(list(scenes)),
        [s.caption for s in scenes],
        solvers,
        steps_list,
        image_metrics={"ssim": _ssim},
        **settings,
    )


@torch.no_grad()
def reconstructions(model: DiffusionModel, scenes: Sequence[Scene], solver: str, steps: int) -> torch.Tensor:
    """decode(reconstruct(invert(x))) for each scene, for the example grid."""
    out = []
    settings = InversionSettings(solver=solver, steps=steps)
    uncond = model.encode_prompt([""])
    for scene in scenes:
        image = stack_images([scene])
        cond = model.encode_prompt([scene.caption])
        result = invert(model, model.encode(image), None, cond, uncond, settings)
        out.append(model.decode(reconstruct(model, result, cond, uncond, settings.inversion_cfg)).clamp(0, 1))
    return torch.cat(out)
