"""Where the shipped lab model lives in the repository."""

from __future__ import annotations

from pathlib import Path

MODEL_FOLDER = Path(__file__).with_name("model")


def shipped_model_folder() -> Path:
    """``lib_guided/lab/model``: the trained lab model (a diffusers folder) committed with the repo."""
    if not (MODEL_FOLDER / "unet").is_dir():
        raise FileNotFoundError(
            f"the shipped lab model is missing: {MODEL_FOLDER} has no unet/ (train one with "
            "`python -m lib_guided.lab.train --out lib_guided/lab/model`, or pass --model DIR)"
        )
    return MODEL_FOLDER
