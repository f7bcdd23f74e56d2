"""The lab's test scenes and the tasks built from their ground truth (bindings, edits).

Evaluation scenes come from a dataset seed the diffusion model never trained on (the training run's
held-out seed); the real reference set for the Fréchet distance comes from another one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lib_guided.lab.classifier_data import images_to_tensor
from lib_guided.lab.world import COLOUR_NAMES, Scene, describe, make_scene, scene_seed

EVAL_DATASET_SEED = 1  # lib_guided.lab.training_run: held-out seed = training seed 0 + 1
REFERENCE_DATASET_SEED = 2
# Lab strokes are exactly flat, so colours can be matched tightly; the default 24 merges two objects of
# the same colour name (about 1 scene in 10).
STROKE_COLOUR_TOLERANCE = 6.0


def eval_scenes(n: int, first: int = 0) -> list[Scene]:
    return [make_scene(scene_seed(EVAL_DATASET_SEED, i)) for i in range(first, first + n)]


def reference_images(n: int) -> torch.Tensor:
    """Held-out real scenes [n, 3, 64, 64] in [0, 1]: what realism is measured against."""
    scenes = (make_scene(scene_seed(REFERENCE_DATASET_SEED, i)) for i in range(n))
    return images_to_tensor(np.stack([s.image for s in scenes]))


def image_tensor(array: np.ndarray) -> torch.Tensor:
    """One uint8 HxWx3 array -> [1, 3, H, W] in [0, 1]."""
    return images_to_tensor(array[None])


def stack_images(scenes: list[Scene], field: str = "image") -> torch.Tensor:
    return images_to_tensor(np.stack([getattr(s, field) for s in scenes]))


def object_bindings(scene: Scene) -> list[dict]:
    """Palette entries binding every object's stroke colour to its phrase as the caption writes it
    ("a red circle"). The article matters: the ``prompts`` region mode encodes the phrase as a prompt of
    its own, and the lab's text encoder only ever saw captions that start with "a" (a bare "red circle"
    drifts: full plan, shape binding 0.891 against 0.927, colour 0.839 against 0.927)."""
    ground = {"sky", scene.background}
    palette = scene.stroke_palette.items()
    return [{"color": c, "phrase": f"a {p}", "weight": 1.0} for c, p in palette if p not in ground]


@dataclass(frozen=True)
class EditTask:
    index: int  # which object changes colour
    new_colour: str
    source_prompt: str
    edit_prompt: str


def edit_task(scene: Scene) -> EditTask:
    """Recolour one object to another colour, chosen from the scene's seed so every run asks the same."""
    rng = np.random.default_rng(scene.seed + 7)
    index = int(rng.integers(len(scene.objects)))
    old = scene.objects[index]["colour"]
    new = str(rng.choice([c for c in COLOUR_NAMES if c != old]))
    recoloured = [dict(o, colour=new) if k == index else o for k, o in enumerate(scene.objects)]
    return EditTask(index, new, scene.caption, describe(recoloured, scene.background))
