"""Read and write the lab model in the diffusers Stable Diffusion folder layout.

``unet/``, ``vae/``, ``text_encoder/`` (safetensors), ``tokenizer/``, ``scheduler/`` (DDIM) and
``model_index.json``, so ``StableDiffusionPipeline.from_pretrained(folder)`` and the per-component
``from_pretrained(folder, subfolder=...)`` calls work offline.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from lib_guided.lab.model_configs import build_scheduler
from lib_guided.lab.tokenizer import write_tokenizer_files
from lib_guided.lab.world import vocabulary

COMPONENTS = {
    "vae": ("diffusers", "AutoencoderKL"),
    "unet": ("diffusers", "UNet2DConditionModel"),
    "text_encoder": ("transformers", "CLIPTextModel"),
    "tokenizer": ("transformers", "CLIPTokenizer"),
    "scheduler": ("diffusers", "DDIMScheduler"),
}


def save_component(folder: str | Path, name: str, model) -> None:
    """save_pretrained into a temporary folder, then swap it in: an interrupted save never leaves a
    half-written component behind."""
    folder = Path(folder)
    final, tmp = folder / name, folder / f"{name}.saving"
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)


def write_model_index(folder: str | Path) -> None:
    import diffusers

    index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": diffusers.__version__}
    index.update({name: list(lib_cls) for name, lib_cls in COMPONENTS.items()})
    index.update(
        {
            "safety_checker": [None, None],
            "feature_extractor": [None, None],
            "image_encoder": [None, None],
            "requires_safety_checker": False,
        }
    )
    Path(folder, "model_index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")


def write_static_parts(folder: str | Path) -> None:
    """The parts that do not train: tokenizer, scheduler config and model index."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_tokenizer_files(folder / "tokenizer", vocabulary())
    save_component(folder, "scheduler", build_scheduler("ddim"))
    write_model_index(folder)


def save_pipeline(folder: str | Path, vae=None, unet=None, text_encoder=None) -> None:
    """Write the given trained components (any subset) plus the static parts."""
    write_static_parts(folder)
    for name, model in (("vae", vae), ("unet", unet), ("text_encoder", text_encoder)):
        if model is not None:
            save_component(folder, name, model)


def load_components(folder: str | Path) -> dict:
    """All five components, in eval mode, without building a pipeline object."""
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    folder = str(folder)
    parts = {
        "vae": AutoencoderKL.from_pretrained(folder, subfolder="vae"),
        "unet": UNet2DConditionModel.from_pretrained(folder, subfolder="unet"),
        "text_encoder": CLIPTextModel.from_pretrained(folder, subfolder="text_encoder"),
        "tokenizer": CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer"),
        "scheduler": DDIMScheduler.from_pretrained(folder, subfolder="scheduler"),
    }
    for name in ("vae", "unet", "text_encoder"):
        parts[name].eval()
    return parts
