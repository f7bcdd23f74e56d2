"""Paintings and payload helpers shared by the end-to-end tests."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

RED, BLUE = (208, 48, 48), (48, 80, 192)
SIZE = 128


def painting(width: int = SIZE, height: int = SIZE) -> Image.Image:
    array = np.zeros((height, width, 3), np.uint8)
    array[:, : width // 2] = RED
    array[:, width // 2 :] = BLUE
    return Image.fromarray(array)


def b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def as_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB")).astype(np.float64) / 255.0


def stroke_mse(image: Image.Image) -> float:
    """Blurred distance to the painting (the faithfulness measure, roughly at this size)."""
    import cv2

    target = as_array(painting(*image.size))
    return float(((cv2.GaussianBlur(as_array(image), (9, 9), 2.0) - target) ** 2).mean())


def guided(**named) -> dict:
    """The script's named args. The full VAE decoder unless a test says otherwise: on random weights only
    its gradient reliably pulls towards the strokes (the default decoder is tested on its own)."""
    return {"guided synthesis": {"args": [{"enabled": True, "decoder": "full", **named}]}}
