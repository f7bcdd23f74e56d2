"""Stroke-guided synthesis on the lab's test scenes, and its faithfulness / realism scores."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from lib_guided.gradop.optimise import GradOPSettings
from lib_guided.lab.classifier import LabClassifier
from lib_guided.lab.eval_scenes import STROKE_COLOUR_TOLERANCE, object_bindings, stack_images
from lib_guided.lab.metrics import faithfulness_mse, frechet_distance
from lib_guided.lab.realism import texture_fd
from lib_guided.lab.world import SIZE, Scene
from lib_guided.pipeline import generate
from lib_guided.protocol import DiffusionModel
from lib_guided.stroke_job import StrokeSettings


@dataclass(frozen=True)
class SynthesisSetting:
    """One point of the realism / faithfulness plot: a method and its knobs."""

    method: str  # gradop+, gradop, sdedit or text
    setting: str  # label for tables and plots
    strength: float = GradOPSettings.strength
    adam_steps: int = GradOPSettings.adam_steps
    injection_steps: int = GradOPSettings.injection_steps
    lr: float = GradOPSettings.lr
    relaxed_steps: int = 50  # GradOP's Adam steps on the text-only sample
    decoder: str = "full"  # what GradOP+'s gradient goes through (lib_guided.gradop.decoders.factory)
    target: str = GradOPSettings.target  # x0 or noisy (lib_guided.gradop.optimise.TARGETS)
    painting: str = StrokeSettings.painting  # the loss's painting function f (stroke_job.PAINTINGS)
    blur_size: int = StrokeSettings.blur_size  # the blur painting's kernel at 512 px
    optimiser: str = GradOPSettings.optimiser

    def gradop(self) -> GradOPSettings:
        return GradOPSettings(
            strength=self.strength,
            injection_steps=self.injection_steps,
            adam_steps=self.adam_steps,
            lr=self.lr,
            target=self.target,
            optimiser=self.optimiser,
        )


def synthesise(
    model: DiffusionModel,
    scenes: Sequence[Scene],
    setting: SynthesisSetting,
    *,
    steps: int,
    cfg: float,
    seed: int,
    per_scene: int = 1,
    bind_objects: bool = False,
    region_weight: float = 0.0,
    region_mode: str = StrokeSettings.region_mode,
) -> torch.Tensor:
    """``per_scene`` images per scene [N * per_scene, 3, 64, 64] (scene-major, see repeat_scenes), prompt =
    the scene's caption, noise seed = seed + index, so every setting starts each scene from the same noise.
    A second image of the same prompt costs ~0.4 of the first (one batched call), hence per_scene.
    ``bind_objects`` passes the object phrases as palette bindings; ``region_weight`` 0 then keeps them in
    the prompt with no attention bias; ``region_mode`` is how a bound phrase is tied to its region."""
    images = []
    for k, scene in enumerate(scenes):
        result = generate(
            model,
            scene.caption,
            strokes=scene.strokes,
            palette=object_bindings(scene) if bind_objects else (),
            method=setting.method,
            width=SIZE,
            height=SIZE,
            steps=steps,
            cfg=cfg,
            seed=seed + k,
            batch_size=per_scene,
            gradop=setting.gradop(),
            relaxed_steps=setting.relaxed_steps,
            settings=StrokeSettings(
                painting=setting.painting,
                blur_size=setting.blur_size,
                decoder=setting.decoder,
                region_weight=region_weight,
                region_mode=region_mode,
                colour_tolerance=STROKE_COLOUR_TOLERANCE,
            ),
        )
        images.append(result.images)
    return torch.cat(images)


def repeat_scenes(scenes: Sequence[Scene], per_scene: int) -> list[Scene]:
    """The scene behind each image of synthesise(..., per_scene)."""
    return [s for s in scenes for _ in range(per_scene)]


def score_synthesis(
    images: torch.Tensor,
    scenes: Sequence[Scene],
    classifier: LabClassifier,
    reference_features: torch.Tensor,
    texture_reference: torch.Tensor | None = None,
) -> dict[str, float]:
    """Mean blurred-stroke MSE (faithfulness), Fréchet distance to the real reference in the classifier's
    feature space (realism_fd) and, given the reference's texture features (lib_guided.lab.realism), in
    texture statistics (texture_fd: realism that does not depend on the labels)."""
    strokes = stack_images(list(scenes), "strokes")
    scores = {
        "faithfulness_mse": float(faithfulness_mse(images, strokes).mean()),
        "realism_fd": frechet_distance(classifier.features(images), reference_features),
    }
    if texture_reference is not None:
        scores["texture_fd"] = texture_fd(images, texture_reference)
    return scores


def sdedit_at(faithfulness: float, sdedit_rows: Sequence[dict]) -> float:
    """SDEdit's realism FD at a given faithfulness MSE, linearly interpolated along its strength sweep
    (clamped to the sweep's ends): the "matched faithfulness" baseline of the GradOP+ claim."""
    points = sorted((r["faithfulness_mse"], r["realism_fd"]) for r in sdedit_rows)
    if faithfulness <= points[0][0]:
        return points[0][1]
    for (x0, y0), (x1, y1) in zip(points, points[1:], strict=False):
        if faithfulness <= x1:
            t = (faithfulness - x0) / max(x1 - x0, 1e-12)
            return y0 + t * (y1 - y0)
    return points[-1][1]
