"""Real-image editing on the lab's test scenes: recolour one object by changing its colour word.

Success: the classifier reads the new colour in the object's box. Preservation: PSNR against the input
outside the object's mask grown by ``KEEP_MARGIN`` pixels. Blend masks: none, the automatic
cross-attention mask (edit_image(mask="auto")) or the ground-truth object mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lib_guided.edit_job import EditSettings
from lib_guided.inversion.invert import InversionSettings
from lib_guided.lab.classifier import LabClassifier
from lib_guided.lab.classifier_data import images_to_tensor
from lib_guided.lab.eval_scenes import EditTask, edit_task, image_tensor
from lib_guided.lab.metrics import dilate, masked_psnr
from lib_guided.lab.world import COLOUR_NAMES, COLOURS, Scene
from lib_guided.pipeline import edit_image
from lib_guided.protocol import DiffusionModel

MASKS = ("none", "auto", "object")
KEEP_MARGIN = 3  # pixels: an object's shadow and anti-aliased border may change with its colour
MASK_MARGIN = 2  # pixels the ground-truth blend mask is grown by before going to latent resolution


@dataclass(frozen=True)
class EditSetting:
    solver: str
    steps: int
    mask: str  # one of MASKS
    injection: float = EditSettings.attention_injection  # share of the edit's steps (0 = off)


def object_mask(scene: Scene, index: int, margin: int = 0) -> torch.Tensor:
    """[1, 1, 64, 64] float mask of one object, grown by ``margin`` pixels."""
    mask = torch.from_numpy(scene.objects[index]["mask"].astype(np.float32))[None, None]
    return dilate(mask, margin)


def blend_mask(scene: Scene, task: EditTask, kind: str, latent_factor: int) -> torch.Tensor | str | None:
    if kind == "none":
        return None
    if kind == "auto":
        return "auto"
    # at latent resolution, a latent pixel counts when any of its image pixels is in the grown mask
    return F.max_pool2d(object_mask(scene, task.index, MASK_MARGIN), latent_factor)


def edit_scores(
    classifier: LabClassifier,
    edited: torch.Tensor,
    originals: torch.Tensor,
    scenes: Sequence[Scene],
    tasks: Sequence[EditTask],
) -> dict[str, torch.Tensor]:
    """Per scene: success (new colour read in the object's box) and PSNR outside the grown object."""
    boxes = torch.tensor(
        [s.objects[t.index]["bbox"] for s, t in zip(scenes, tasks, strict=True)], dtype=torch.float32
    )
    colours = classifier.classify_objects(edited, boxes).colour
    wanted = torch.tensor([COLOUR_NAMES.index(t.new_colour) for t in tasks])
    keep = torch.cat([1 - object_mask(s, t.index, KEEP_MARGIN) for s, t in zip(scenes, tasks, strict=True)])
    return {"success": colours == wanted, "background_psnr": masked_psnr(edited, originals, keep)}


def run_edits(
    model: DiffusionModel, scenes: Sequence[Scene], setting: EditSetting, *, edit_cfg: float, seed: int = 0
) -> torch.Tensor:
    """Edited images [N, 3, 64, 64], one edit_task() per scene."""
    inversion = InversionSettings(solver=setting.solver, steps=setting.steps)
    out = []
    for scene in scenes:
        task = edit_task(scene)
        mask = blend_mask(scene, task, setting.mask, model.vae_scale_factor)
        result = edit_image(
            model,
            image_tensor(scene.image),
            task.source_prompt,
            task.edit_prompt,
            inversion=inversion,
            edit_cfg=edit_cfg,
            mask=mask,
            attention_injection=setting.injection,
            seed=seed,
        )
        out.append(result.image)
    return torch.cat(out)


def example_edits(
    model: DiffusionModel, scenes: Sequence[Scene], setting: EditSetting, *, edit_cfg: float, seed: int = 0
) -> dict[str, torch.Tensor]:
    """For the report's example grid: per scene the reconstruction, the blend mask and the edit."""
    inversion = InversionSettings(solver=setting.solver, steps=setting.steps)
    out: dict[str, list[torch.Tensor]] = {"reconstruction": [], "mask": [], "edit": []}
    for scene in scenes:
        task = edit_task(scene)
        image = image_tensor(scene.image)
        result = edit_image(
            model,
            image,
            task.source_prompt,
            task.edit_prompt,
            inversion=inversion,
            edit_cfg=edit_cfg,
            mask=blend_mask(scene, task, setting.mask, model.vae_scale_factor),
            attention_injection=setting.injection,
            seed=seed,
            with_reconstruction=True,
        )
        mask = result.mask if result.mask is not None else torch.ones_like(image[:, :1])
        out["reconstruction"].append(result.reconstruction)
        out["mask"].append(mask.expand(-1, 3, -1, -1))
        out["edit"].append(result.image)
    return {name: torch.cat(images) for name, images in out.items()}


def recoloured(scene: Scene, task: EditTask) -> np.ndarray:
    """A ground-truth edit: the object's pixels rescaled channel-wise from its old to its new colour
    (shading kept), everything else untouched. The sanity reference for the edit metric."""
    obj = scene.objects[task.index]
    gain = np.asarray(COLOURS[task.new_colour]) / np.asarray(COLOURS[obj["colour"]])
    image = scene.image.astype(np.float32)
    image[obj["mask"]] = image[obj["mask"]] * gain
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def images_of(arrays: Sequence[np.ndarray]) -> torch.Tensor:
    return images_to_tensor(np.stack(arrays))


def tasks_for(scenes: Sequence[Scene]) -> list[EditTask]:
    return [edit_task(s) for s in scenes]
