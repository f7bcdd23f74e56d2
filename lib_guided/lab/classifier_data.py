"""Training and validation data for the lab classifier, straight from the world's ground truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lib_guided.lab.crops import painted_box
from lib_guided.lab.world import COLOUR_NAMES, SHAPES, SIZE, make_scene, scene_seed


@dataclass
class ClassifierData:
    images: torch.Tensor  # [N, 3, 64, 64] uint8 (floats would cost 4x the memory)
    background: torch.Tensor  # [N]
    shapes_present: torch.Tensor  # [N, 4] 0/1
    colours_present: torch.Tensor  # [N, 4] 0/1
    count: torch.Tensor  # [N] objects - 1
    horizon: torch.Tensor  # [N] horizon row / 64
    # one row per object: the image it is in, its true box, the box of its painted region, its labels
    object_image: torch.Tensor  # [M]
    true_box: torch.Tensor  # [M, 4]
    painted_box: torch.Tensor  # [M, 4]
    shape: torch.Tensor  # [M]
    colour: torch.Tensor  # [M]

    def float_images(self, index: torch.Tensor) -> torch.Tensor:
        return self.images[index].float() / 255.0


def images_to_tensor(images_u8: np.ndarray) -> torch.Tensor:
    """[N, H, W, 3] uint8 -> [N, 3, H, W] float in [0, 1]."""
    return to_channels_first(images_u8).float() / 255.0


def to_channels_first(images_u8: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images_u8)).permute(0, 3, 1, 2).contiguous()


def build_data(n: int, dataset_seed: int) -> ClassifierData:
    scenes = [make_scene(scene_seed(dataset_seed, i)) for i in range(n)]
    rows: dict[str, list] = {k: [] for k in ("object_image", "true_box", "painted_box", "shape", "colour")}
    shapes_present = torch.zeros(n, len(SHAPES))
    colours_present = torch.zeros(n, len(COLOUR_NAMES))
    for i, scene in enumerate(scenes):
        for k, obj in enumerate(scene.objects):
            rows["object_image"].append(i)
            rows["true_box"].append(obj["bbox"])
            rows["painted_box"].append(painted_box(scene, k))
            rows["shape"].append(SHAPES.index(obj["shape"]))
            rows["colour"].append(COLOUR_NAMES.index(obj["colour"]))
        shapes_present[i, scene.labels["shapes"]] = 1
        colours_present[i, scene.labels["colours"]] = 1
    return ClassifierData(
        images=to_channels_first(np.stack([s.image for s in scenes])),
        background=torch.tensor([s.labels["background"] for s in scenes]),
        shapes_present=shapes_present,
        colours_present=colours_present,
        count=torch.tensor([len(s.objects) - 1 for s in scenes]),
        horizon=torch.tensor([s.horizon / SIZE for s in scenes], dtype=torch.float32),
        object_image=torch.tensor(rows["object_image"]),
        true_box=torch.tensor(rows["true_box"], dtype=torch.float32),
        painted_box=torch.tensor(rows["painted_box"], dtype=torch.float32),
        shape=torch.tensor(rows["shape"]),
        colour=torch.tensor(rows["colour"]),
    )
