"""Boxes around the lab's objects and fixed-size crops of them, batched with grid_sample."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

CROP_SIZE = 24  # objects are 12-20 pixels across at 64x64
CROP_MARGIN = 2  # pixels added around a box: the painted region can be a little off the object


def region_box(regions: np.ndarray, label: int) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), x1/y1 exclusive, of the pixels labelled ``label``; None when there are none."""
    ys, xs = np.nonzero(regions == label)
    if len(xs) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def painted_box(scene, index: int) -> tuple[int, int, int, int]:
    """Where object ``index`` was painted in the strokes (its true box if the painting lost it)."""
    return region_box(scene.stroke_regions, 2 + index) or tuple(scene.objects[index]["bbox"])


def crop(images: torch.Tensor, boxes: torch.Tensor, size: int = CROP_SIZE, margin: float = CROP_MARGIN):
    """Square crops [N, 3, size, size] of ``images`` [N, 3, H, W] around ``boxes`` [N, 4] (x0, y0, x1, y1).

    The square side is the box's longer side plus the margin, so a shape keeps its aspect ratio; outside
    the image is zero-padded like the classifier saw in training.
    """
    n, _, h, w = images.shape
    boxes = boxes.to(torch.float32)
    cx = (boxes[:, 0] + boxes[:, 2]) / 2
    cy = (boxes[:, 1] + boxes[:, 3]) / 2
    side = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) + 2 * margin
    theta = torch.zeros(n, 2, 3)
    # affine_grid maps [-1, 1] output coordinates to normalised input coordinates (align_corners=False)
    theta[:, 0, 0] = side / w
    theta[:, 1, 1] = side / h
    theta[:, 0, 2] = 2 * cx / w - 1
    theta[:, 1, 2] = 2 * cy / h - 1
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    return F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
