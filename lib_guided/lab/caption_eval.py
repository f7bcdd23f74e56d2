"""Caption accuracy: does a text-only sample show what its caption says, wherever it put it?

A text-only sample has no layout, so the eval scene's object boxes say nothing about where to look. The
judge therefore finds objects first and lets the shipped classifier name them:

1. Proposals: every pixel is given the nearest colour of the world's palette in brightness-free
   chromaticity (r, g, b) / (r + g + b) (the four object colours against sky, cloud, sun and the four
   grounds; shading is a gain, so it keeps the chromaticity); dark pixels, whose chromaticity is noise,
   are left out. Each connected blob of one object colour of at least MIN_AREA pixels is a candidate.
2. Judgement: ObjectNet classifies the crop around each candidate's box (the binding metric's crops),
   giving one (shape, colour) per candidate; the mask only says where to look, the classifier says what.
3. A captioned object is present when a candidate was classified as its shape and colour; each candidate
   counts for one object (two red circles need two red-circle blobs). The background is SceneNet's
   background head on the whole image. A caption is right when every object is present and the
   background is right; extra objects are not penalised (the caption does not forbid them).

Sliding crops were rejected: ObjectNet never saw a crop without an object, so it names a shape in bare
grass too and every caption would find its objects somewhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from lib_guided.lab import render
from lib_guided.lab.world import BACKGROUNDS, COLOUR_NAMES, COLOURS, SHAPES, Scene

MIN_AREA = 20  # pixels; the smallest object (a star of radius 6) covers about 60
MIN_BRIGHTNESS = 90  # r + g + b below this: too dark for a trustworthy chromaticity
_NON_OBJECT = (render.SKY_TOP, render.SKY_HORIZON, render.CLOUD, render.SUN, *render.GROUND_BASE.values())


def _chromaticity(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float32)
    return rgb / np.maximum(rgb.sum(-1, keepdims=True), 1.0)


_PALETTE = _chromaticity(np.array([*COLOURS.values(), *_NON_OBJECT], np.float32))


def colour_labels(image: np.ndarray) -> np.ndarray:
    """Per pixel of a uint8 HxWx3 image: index in COLOUR_NAMES of the nearest palette colour, -1 when
    that is a sky / ground colour or the pixel is too dark."""
    chroma = _chromaticity(image)
    nearest = np.linalg.norm(chroma[..., None, :] - _PALETTE, axis=-1).argmin(-1)
    labels = np.where(nearest < len(COLOURS), nearest, -1)
    return np.where(image.astype(np.int32).sum(-1) >= MIN_BRIGHTNESS, labels, -1)


def proposals(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Boxes (x0, y0, x1, y1), x1/y1 exclusive, of the object-coloured blobs of a uint8 HxWx3 image."""
    labels = colour_labels(image)
    boxes = []
    for colour in range(len(COLOURS)):
        count, _, stats, _ = cv2.connectedComponentsWithStats((labels == colour).astype(np.uint8), 8)
        for x, y, w, h, area in stats[1:count]:
            if area >= MIN_AREA:
                boxes.append((int(x), int(y), int(x + w), int(y + h)))
    return boxes


def _as_arrays(images: torch.Tensor) -> np.ndarray:
    return (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()


@torch.no_grad()
def caption_hits(classifier, images: torch.Tensor, scenes: Sequence[Scene]) -> dict[str, torch.Tensor]:
    """Per image: objects of its scene's caption found (count), objects asked, background right."""
    arrays = _as_arrays(images)
    index, boxes = [], []
    for i, array in enumerate(arrays):
        for box in proposals(array):
            index.append(i)
            boxes.append(box)
    found = [Counter() for _ in scenes]
    if boxes:
        predicted = classifier.classify_objects(images[torch.tensor(index)].float(), torch.tensor(boxes))
        for i, shape, colour in zip(index, predicted.shape.tolist(), predicted.colour.tolist(), strict=True):
            found[i][(shape, colour)] += 1
    asked = [
        Counter((SHAPES.index(o["shape"]), COLOUR_NAMES.index(o["colour"])) for o in s.objects)
        for s in scenes
    ]
    background = classifier.scene(images.float())["background"].argmax(1)
    matched = [sum(min(n, f[k]) for k, n in a.items()) for a, f in zip(asked, found, strict=True)]
    return {
        "found": torch.tensor(matched),
        "asked": torch.tensor([len(s.objects) for s in scenes]),
        "background": background == torch.tensor([BACKGROUNDS.index(s.background) for s in scenes]),
    }


def caption_accuracy(classifier, images: torch.Tensor, scenes: Sequence[Scene]) -> dict[str, float]:
    """Fraction of images whose caption is fully shown, plus its object and background parts."""
    hits = caption_hits(classifier, images, scenes)
    right = (hits["found"] == hits["asked"]) & hits["background"]
    return {
        "caption_accuracy": float(right.float().mean()),
        "object_accuracy": float(hits["found"].sum() / hits["asked"].sum().clamp_min(1)),
        "background_accuracy": float(hits["background"].float().mean()),
        "images": len(images),
    }
