"""Region binding: did the phrase bound to a stroke colour come out where that colour was painted?

Each object's painted region is cropped from the image and its shape classified; a hit means the shape
is the one named by the phrase bound to that colour ("red circle" -> circle).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from lib_guided.lab.classifier import LabClassifier
from lib_guided.lab.crops import painted_box
from lib_guided.lab.world import COLOUR_NAMES, SHAPES, Scene


def object_rows(scenes: Sequence[Scene]) -> tuple[torch.Tensor, ...]:
    """(image index, painted box, shape, colour) for every object of every scene."""
    index, boxes, shapes, colours = [], [], [], []
    for i, scene in enumerate(scenes):
        for k, obj in enumerate(scene.objects):
            index.append(i)
            boxes.append(painted_box(scene, k))
            shapes.append(SHAPES.index(obj["shape"]))
            colours.append(COLOUR_NAMES.index(obj["colour"]))
    boxes_tensor = torch.tensor(boxes, dtype=torch.float32)
    return torch.tensor(index), boxes_tensor, torch.tensor(shapes), torch.tensor(colours)


def binding_hits(
    classifier: LabClassifier, images: torch.Tensor, scenes: Sequence[Scene]
) -> dict[str, torch.Tensor]:
    """Per object: whether the bound phrase's shape (and, separately, its colour) is found in its region."""
    index, boxes, shapes, colours = object_rows(scenes)
    predicted = classifier.classify_objects(images[index], boxes)
    return {"shape": predicted.shape == shapes, "colour": predicted.colour == colours}


def binding_accuracy(classifier: LabClassifier, images: torch.Tensor, scenes: Sequence[Scene]) -> dict:
    hits = binding_hits(classifier, images, scenes)
    return {
        "accuracy": float(hits["shape"].float().mean()),
        "colour_accuracy": float(hits["colour"].float().mean()),
        "objects": len(hits["shape"]),
    }
