"""The stroke painting a person would make of a scene: flat, coarse, wobbly, approximately coloured.

Regions are labelled 0 = sky, 1 = ground, 2 + i = object i. The painting keeps one flat colour per
region (no texture, shading, outlines, clouds or sun), moves the region borders with smooth noise and
random dilation/erosion, and is painted on a coarse grid then enlarged, like a quick brush sketch.
"""

from __future__ import annotations

import cv2
import numpy as np

from lib_guided.lab.render import _XX, _YY, SIZE, value_noise

SKY, GROUND = 0, 1
COLOUR_ERROR = 9.0  # std of a person's colour pick around the true mean, in 0..255 units
_ROUND = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))


def wobble(rng: np.random.Generator, labels: np.ndarray) -> np.ndarray:
    """Move region borders by a smooth random displacement of 1-2.5 pixels."""
    amount = rng.uniform(1.0, 2.5)
    map_x = _XX + (value_noise(rng, 4) - 0.5) * 2.0 * amount
    map_y = _YY + (value_noise(rng, 4) - 0.5) * 2.0 * amount
    return cv2.remap(labels, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REPLICATE)


def grow_or_shrink(rng: np.random.Generator, mask: np.ndarray, solid: bool) -> np.ndarray:
    """People paint objects a bit too big, sometimes a bit too small (only solid shapes survive that)."""
    step = int(rng.choice((-1, 0, 1, 1, 2))) if solid else int(rng.integers(0, 3))
    if step > 0:
        return cv2.dilate(mask, _ROUND, iterations=step)
    if step < 0:
        return cv2.erode(mask, _ROUND)
    return mask


def region_colours(rng: np.random.Generator, image: np.ndarray, regions: np.ndarray, count: int):
    """Mean colour of each region plus a pick error; all distinct so the palette is a bijection."""
    colours, seen = [], set()
    flat_image = image.reshape(-1, 3).astype(np.float32)
    flat_regions = regions.reshape(-1)
    for k in range(count):
        mean = flat_image[flat_regions == k].mean(0)
        rgb = np.clip(np.round(mean + rng.normal(0.0, COLOUR_ERROR, 3)), 0, 255).astype(np.uint8)
        while tuple(rgb) in seen:
            rgb[int(np.argmin(np.abs(rgb.astype(int) - 128)))] += 1
        seen.add(tuple(rgb))
        colours.append(rgb)
    return np.stack(colours)


def paint_strokes(
    rng: np.random.Generator, image: np.ndarray, background: np.ndarray, masks: list, solid: list[bool]
):
    """Stroke painting of a scene.

    ``background`` is the bool ground mask of the clean scene (sky elsewhere), ``masks`` the bool
    masks of the objects in drawing order and ``solid`` whether each one is compact enough to be
    painted a little too small without losing its parts (circles, squares). Returns (strokes uint8
    HxWx3, stroke region map int8 HxW, region colours uint8 Rx3) with R = 2 + len(masks).
    """
    regions = np.where(background, GROUND, SKY).astype(np.uint8)
    for i, mask in enumerate(masks):
        regions[mask] = 2 + i
    colours = region_colours(rng, image, regions, 2 + len(masks))

    # Sky and ground first, then each object painted over them with its own hand wobble.
    painted = wobble(rng, background.astype(np.uint8))
    for i, mask in enumerate(masks):
        drawn = grow_or_shrink(rng, wobble(rng, mask.astype(np.uint8)), solid[i])
        painted[drawn > 0] = 2 + i

    coarse = int(rng.choice((24, 32, 32)))  # brush size: 2-2.7 pixels
    painted = cv2.resize(painted, (coarse, coarse), interpolation=cv2.INTER_NEAREST)
    painted = cv2.resize(painted, (SIZE, SIZE), interpolation=cv2.INTER_NEAREST)
    return colours[painted], painted.astype(np.int8), colours
