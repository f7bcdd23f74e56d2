"""The lab world: seeded 64x64 scenes of shaded shapes on sky and ground, with captions and strokes.

Every scene is a pure function of its seed, so a test set is just a list of seeds and its ground truth
(object masks, classes, the stroke painting a person would make) comes for free.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lib_guided.lab import render
from lib_guided.lab.strokes import paint_strokes

SIZE = render.SIZE
BACKGROUNDS = ("grass", "sand", "water", "snow")
SHAPES = ("circle", "square", "triangle", "star")
# Saturated colours, chosen away from every ground and from the sky.
COLOURS = {
    "red": (202.0, 44.0, 42.0),
    "blue": (42.0, 72.0, 212.0),
    "yellow": (238.0, 198.0, 36.0),
    "purple": (138.0, 60.0, 178.0),
}
COLOUR_NAMES = tuple(COLOURS)
MAX_OBJECTS = 3
RELATIONS = ("above", "below", "and")
_SCENES_PER_DATASET_SEED = 10**7


@dataclass
class Scene:
    """One scene and its ground truth.

    ``regions`` labels the clean image (0 sky, 1 ground, 2 + i object i); ``stroke_regions`` labels
    the stroke painting the same way. ``labels`` holds classifier targets: ``background`` (index in
    BACKGROUNDS), ``shapes`` and ``colours`` (per object, indices in SHAPES and COLOUR_NAMES).
    """

    seed: int
    image: np.ndarray
    caption: str
    objects: list[dict]
    background: str
    strokes: np.ndarray
    stroke_palette: dict[str, str]
    labels: dict
    regions: np.ndarray
    stroke_regions: np.ndarray
    horizon: int


def vocabulary() -> list[str]:
    """Every word the captions and the stroke palette phrases can contain."""
    words = ["a", "on", "sky", *RELATIONS, *COLOUR_NAMES, *SHAPES, *BACKGROUNDS]
    return list(dict.fromkeys(words))


def describe(objects: list[dict], background: str) -> str:
    """Caption grammar: objects left to right, joined by above/below (vertical pairs) or 'and'."""
    ordered = sorted(objects, key=lambda o: o["centre"][0])
    parts = [f"a {ordered[0]['colour']} {ordered[0]['shape']}"]
    for prev, cur in zip(ordered, ordered[1:], strict=False):
        dx = cur["centre"][0] - prev["centre"][0]
        dy = cur["centre"][1] - prev["centre"][1]
        relation = ("above" if dy > 0 else "below") if abs(dy) > dx else "and"
        parts.append(f"{relation} a {cur['colour']} {cur['shape']}")
    return " ".join(parts) + f" on {background}"


def _place_objects(rng: np.random.Generator, horizon: int) -> list[dict]:
    """1-3 objects standing on the ground, bounding boxes at least 2 pixels apart."""
    placed: list[dict] = []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        for _attempt in range(30):
            r = float(rng.uniform(6.0, 9.0))
            cx = float(rng.uniform(r + 1.0, SIZE - 2.0 - r))
            cy = float(rng.uniform(horizon + 1.0, SIZE - 2.0 - r))
            apart = [max(abs(cx - o["centre"][0]), abs(cy - o["centre"][1])) - o["size"] for o in placed]
            if all(gap >= r + 2.0 for gap in apart):
                placed.append({"centre": (cx, cy), "size": r})
                break
    for obj in placed:
        obj["shape"] = SHAPES[int(rng.integers(len(SHAPES)))]
        obj["colour"] = COLOUR_NAMES[int(rng.integers(len(COLOUR_NAMES)))]
        obj["angle"] = 0.0 if obj["shape"] == "circle" else float(np.deg2rad(rng.uniform(-12.0, 12.0)))
    return placed


def _light_direction(rng: np.random.Generator, sun) -> np.ndarray:
    """Unit vector towards the light: from the sun when there is one, else from somewhere above."""
    if sun is not None:
        v = np.array([sun[0] - SIZE / 2, sun[1] - SIZE * 0.75], np.float32)
    else:
        angle = rng.uniform(np.deg2rad(200.0), np.deg2rad(340.0))
        v = np.array([np.cos(angle), np.sin(angle)], np.float32)
    return v / np.linalg.norm(v)


def _hex(rgb) -> str:
    return "#" + "".join(f"{int(c):02x}" for c in rgb)


def make_scene(seed: int) -> Scene:
    """Deterministic scene for ``seed``."""
    rng = np.random.default_rng(seed)
    background = BACKGROUNDS[int(rng.integers(len(BACKGROUNDS)))]
    horizon = int(rng.integers(18, 32))
    sun = None
    if rng.random() < 0.5:
        sun = (float(rng.uniform(6, SIZE - 6)), float(rng.uniform(4, max(horizon - 6, 5))))
    light = _light_direction(rng, sun)

    sky, haze = render.paint_sky(rng, float(horizon), sun)
    profile = render.horizon_profile(rng, horizon, hilly=background != "water")
    ground_cover = render.ground_alpha(profile)
    ground = render.paint_ground(rng, background, profile, haze)
    image = render.composite(sky, ground, ground_cover)

    objects = _place_objects(rng, horizon)
    for obj in objects:
        image = render.cast_shadow(image, *obj["centre"], obj["size"], light, ground_cover)
    for obj in objects:
        cx, cy = obj["centre"]
        r, angle = obj["size"], obj["angle"]
        base = render.jitter(rng, COLOURS[obj["colour"]], 6.0)
        cover = render.rasterise(obj["shape"], cx, cy, r, angle)
        image = render.composite(image, render.shade_object(obj["shape"], base, cx, cy, r, light), cover)
        line = render.rasterise(obj["shape"], cx, cy, r, angle, outline=True)
        image = render.composite(image, base * 0.42, line * 0.9)
        mask = cover >= 0.5
        ys, xs = np.nonzero(mask)
        obj["mask"] = mask
        obj["bbox"] = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    image = image + rng.normal(0.0, 1.5, image.shape).astype(np.float32)  # faint sensor grain
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)

    background_mask = ground_cover >= 0.5
    masks = [obj["mask"] for obj in objects]
    solid = [obj["shape"] in ("circle", "square") for obj in objects]
    strokes, stroke_regions, colours = paint_strokes(rng, image, background_mask, masks, solid)
    regions = np.where(background_mask, 1, 0).astype(np.int8)
    for i, mask in enumerate(masks):
        regions[mask] = 2 + i

    phrases = ["sky", background] + [f"{o['colour']} {o['shape']}" for o in objects]
    present = set(np.unique(stroke_regions).tolist())
    palette = {_hex(colours[k]): phrases[k] for k in range(len(phrases)) if k in present}
    labels = {
        "background": BACKGROUNDS.index(background),
        "shapes": [SHAPES.index(o["shape"]) for o in objects],
        "colours": [COLOUR_NAMES.index(o["colour"]) for o in objects],
    }
    public = [{k: o[k] for k in ("shape", "colour", "bbox", "mask", "centre", "size")} for o in objects]
    return Scene(
        seed=seed,
        image=image,
        caption=describe(objects, background),
        objects=public,
        background=background,
        strokes=strokes,
        stroke_palette=palette,
        labels=labels,
        regions=regions,
        stroke_regions=stroke_regions,
        horizon=horizon,
    )


def scene_seed(dataset_seed: int, index: int) -> int:
    """Seed of scene ``index`` of dataset ``dataset_seed``; datasets with different seeds never overlap."""
    if not 0 <= index < _SCENES_PER_DATASET_SEED:
        raise ValueError(f"index {index} out of range")
    return dataset_seed * _SCENES_PER_DATASET_SEED + index


def make_dataset(n: int, seed: int) -> dict:
    """``n`` scenes stacked into arrays.

    Keys: ``images`` and ``strokes`` (n, 64, 64, 3) uint8, ``captions`` (list of str), ``seeds`` (n,),
    ``background`` (n,), ``n_objects`` (n,), and per object slot (n, 3) ``shapes``, ``colours``,
    plus ``bboxes`` (n, 3, 4) as x0, y0, x1, y1; empty slots are -1.
    """
    out = {
        "images": np.empty((n, SIZE, SIZE, 3), np.uint8),
        "strokes": np.empty((n, SIZE, SIZE, 3), np.uint8),
        "captions": [],
        "seeds": np.empty(n, np.int64),
        "background": np.empty(n, np.int64),
        "n_objects": np.empty(n, np.int64),
        "shapes": np.full((n, MAX_OBJECTS), -1, np.int64),
        "colours": np.full((n, MAX_OBJECTS), -1, np.int64),
        "bboxes": np.full((n, MAX_OBJECTS, 4), -1, np.int64),
    }
    for i in range(n):
        scene = make_scene(scene_seed(seed, i))
        k = len(scene.objects)
        out["images"][i] = scene.image
        out["strokes"][i] = scene.strokes
        out["captions"].append(scene.caption)
        out["seeds"][i] = scene.seed
        out["background"][i] = scene.labels["background"]
        out["n_objects"][i] = k
        out["shapes"][i, :k] = scene.labels["shapes"]
        out["colours"][i, :k] = scene.labels["colours"]
        out["bboxes"][i, :k] = [o["bbox"] for o in scene.objects]
    return out
