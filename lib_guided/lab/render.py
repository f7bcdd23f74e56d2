"""Drawing helpers for the lab world: sky, textured ground, shaded objects (float32 RGB in 0..255).

Everything is vectorised numpy on 64x64 frames or cv2 with sub-pixel anti-aliasing, so a whole scene
costs about a millisecond.
"""

from __future__ import annotations

import cv2
import numpy as np

SIZE = 64
_YY, _XX = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
_SUBPIXEL_BITS = 4  # cv2 "shift": coordinates in 1/16 pixel, for smooth anti-aliased edges
_ONE = 1 << _SUBPIXEL_BITS

SKY_TOP = (70.0, 128.0, 205.0)
SKY_HORIZON = (178.0, 210.0, 238.0)
CLOUD = (246.0, 247.0, 250.0)
SUN = (255.0, 244.0, 205.0)
GROUND_BASE = {
    "grass": (74.0, 140.0, 58.0),
    "sand": (214.0, 189.0, 130.0),
    "water": (36.0, 104.0, 146.0),
    "snow": (234.0, 239.0, 247.0),
}


def jitter(rng: np.random.Generator, colour, amount: float) -> np.ndarray:
    return np.asarray(colour, np.float32) + rng.normal(0.0, amount, 3).astype(np.float32)


def value_noise(rng: np.random.Generator, cells: int, shape=(SIZE, SIZE)) -> np.ndarray:
    """Smooth noise in roughly [0, 1]: a coarse random grid upsampled bicubically."""
    grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
    return cv2.resize(grid, (shape[1], shape[0]), interpolation=cv2.INTER_CUBIC)


def fractal_noise(rng: np.random.Generator) -> np.ndarray:
    """Zero-centred three-octave noise in about [-0.5, 0.5]."""
    return 0.5 * value_noise(rng, 4) + 0.3 * value_noise(rng, 8) + 0.2 * value_noise(rng, 16) - 0.5


def horizon_profile(rng: np.random.Generator, row: int, hilly: bool) -> np.ndarray:
    """Per-column horizon height; gentle hills except on water, which stays flat."""
    if not hilly:
        return np.full(SIZE, float(row), np.float32)
    knots = rng.random((1, 5), dtype=np.float32)
    hills = cv2.resize(knots, (SIZE, 1), interpolation=cv2.INTER_CUBIC)[0]
    return row + rng.uniform(0.0, 3.0) * (hills - 0.5) * 2.0


def paint_sky(rng: np.random.Generator, horizon: float, sun: tuple[float, float] | None):
    """Vertical gradient, a few soft clouds and an optional sun. Returns (sky, horizon colour)."""
    # Mostly a brightness change: independent channel jitter turns the sky lilac or green.
    top = jitter(rng, SKY_TOP, 3.0) + rng.normal(0.0, 10.0)
    low = jitter(rng, SKY_HORIZON, 3.0) + rng.normal(0.0, 8.0)
    t = np.clip(_YY / max(horizon, 1.0), 0.0, 1.0)[..., None]
    sky = top * (1.0 - t) + low * t
    cloud_alpha = np.zeros((SIZE, SIZE), np.float32)
    for _ in range(rng.integers(0, 4)):
        cx, cy = rng.uniform(0, SIZE), rng.uniform(2, max(horizon - 4.0, 3.0))
        sx, sy = rng.uniform(6, 13), rng.uniform(1.5, 3.5)
        blob = np.exp(-(((_XX - cx) / sx) ** 2) - ((_YY - cy) / sy) ** 2)
        cloud_alpha = np.maximum(cloud_alpha, blob * rng.uniform(0.5, 0.85))
    if cloud_alpha.any():
        cloud_alpha *= 0.75 + 0.5 * value_noise(rng, 8)
        a = np.clip(cloud_alpha, 0.0, 0.9)[..., None]
        sky = sky * (1.0 - a) + np.asarray(CLOUD, np.float32) * a
    if sun is not None:
        radius = rng.uniform(2.5, 4.0)
        dist = np.sqrt((_XX - sun[0]) ** 2 + (_YY - sun[1]) ** 2)
        glow = 0.35 * np.exp(-((dist / (3.0 * radius)) ** 2))
        a = np.clip(np.maximum(radius - dist + 0.5, 0.0), 0.0, 1.0)
        a = np.maximum(a, glow)[..., None]
        sky = sky * (1.0 - a) + np.asarray(SUN, np.float32) * a
    return sky, low


def paint_ground(rng: np.random.Generator, kind: str, profile: np.ndarray, haze: np.ndarray) -> np.ndarray:
    """Textured ground of one kind, with a depth gradient and haze near the horizon."""
    base = jitter(rng, GROUND_BASE[kind], 6.0)
    depth = np.clip((_YY - profile[None, :]) / np.maximum(SIZE - 1 - profile[None, :], 1.0), 0.0, 1.0)
    noise = fractal_noise(rng)
    if kind == "grass":
        blades = cv2.resize(rng.random((8, SIZE), dtype=np.float32), (SIZE, SIZE)) - 0.5
        gain = 0.9 + 0.18 * depth + 0.35 * noise + 0.18 * blades
        colour = base * gain[..., None]
    elif kind == "sand":
        ripples = np.sin(_YY * rng.uniform(1.0, 1.6) + 7.0 * noise)
        gain = 0.95 + 0.08 * depth + 0.18 * noise + 0.05 * ripples
        colour = base * gain[..., None]
    elif kind == "water":
        waves = np.sin(_YY * rng.uniform(1.8, 2.6) + _XX * 0.25 + 9.0 * noise)
        sparkle = np.clip(waves - 0.75, 0.0, 1.0) * 4.0  # thin bright wave crests
        gain = 1.12 - 0.3 * depth + 0.2 * noise
        colour = base * gain[..., None] + (45.0 * sparkle)[..., None]
    else:  # snow: cool blue shadows in the hollows
        shadow = np.clip(-noise, 0.0, 0.5)[..., None]
        colour = base - shadow * np.asarray((60.0, 40.0, 8.0), np.float32) - 8.0 * (1.0 - depth)[..., None]
    w = (0.35 * (1.0 - depth) ** 3)[..., None]
    return colour * (1.0 - w) + haze * w


def composite(under: np.ndarray, over: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None]
    return under * (1.0 - a) + over * a


def ground_alpha(profile: np.ndarray) -> np.ndarray:
    """Anti-aliased coverage of the ground below the horizon profile."""
    return np.clip(_YY - profile[None, :] + 0.5, 0.0, 1.0)


def shape_outline(shape: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray | None:
    """Polygon vertices (N x 2, pixels) of a shape, or None for the circle (drawn natively)."""
    if shape == "circle":
        return None
    if shape == "square":
        pts = np.array([(-r, -r), (r, -r), (r, r), (-r, r)], np.float32)
    elif shape == "triangle":
        a = np.deg2rad(np.array([-90.0, 30.0, 150.0]))
        pts = np.stack([np.cos(a), np.sin(a)], 1) * r * 1.18 + np.array([0.0, 0.2 * r])
    elif shape == "star":
        a = np.deg2rad(np.arange(10) * 36.0 - 90.0)
        radii = np.where(np.arange(10) % 2 == 0, 1.12 * r, 0.5 * r)
        pts = np.stack([np.cos(a), np.sin(a)], 1) * radii[:, None]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]], np.float32)
    return pts @ rot.T + np.array([cx, cy], np.float32)


def _subpixel(values) -> np.ndarray:
    return np.round(np.asarray(values, np.float64) * _ONE).astype(np.int32)


def rasterise(shape: str, cx: float, cy: float, r: float, angle: float, outline: bool = False) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of the filled shape, or of its 1-pixel outline."""
    canvas = np.zeros((SIZE, SIZE), np.uint8)
    poly = shape_outline(shape, cx, cy, r, angle)
    thickness = 1 if outline else -1
    if poly is None:
        centre = tuple(int(v) for v in _subpixel((cx, cy)))
        cv2.circle(canvas, centre, int(_subpixel(r)), 255, thickness, cv2.LINE_AA, _SUBPIXEL_BITS)
    elif outline:
        cv2.polylines(canvas, [_subpixel(poly)], True, 255, 1, cv2.LINE_AA, _SUBPIXEL_BITS)
    else:
        cv2.fillPoly(canvas, [_subpixel(poly)], 255, cv2.LINE_AA, shift=_SUBPIXEL_BITS)
    return canvas.astype(np.float32) / 255.0


def cast_shadow(image: np.ndarray, cx: float, cy: float, r: float, light: np.ndarray, ground: np.ndarray):
    """Darken the ground under an object, offset away from the light."""
    sx, sy = cx - light[0] * r * 0.6, cy + r * 0.85
    soft = np.exp(-(((_XX - sx) / (r * 0.95)) ** 2) - ((_YY - sy) / (r * 0.32)) ** 2)
    return image * (1.0 - 0.38 * soft * ground)[..., None]


def shade_object(shape: str, base: np.ndarray, cx: float, cy: float, r: float, light: np.ndarray):
    """Object colour field: a linear light gradient; circles also get sphere falloff and a highlight."""
    facing = ((_XX - cx) * light[0] + (_YY - cy) * light[1]) / r
    gain = 1.0 + 0.22 * facing
    highlight = np.zeros_like(gain)
    if shape == "circle":
        gain -= 0.18 * ((_XX - cx) ** 2 + (_YY - cy) ** 2) / (r * r)
        hx, hy = cx + light[0] * 0.45 * r, cy + light[1] * 0.45 * r
        highlight = 0.55 * np.exp(-((_XX - hx) ** 2 + (_YY - hy) ** 2) / (2.0 * (0.28 * r) ** 2))
    gain = np.clip(gain, 0.55, 1.35)[..., None]
    colour = base * gain
    return colour + (255.0 - colour) * highlight[..., None]
