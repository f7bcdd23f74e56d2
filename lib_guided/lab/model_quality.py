"""report.json's ``model_quality``: how good the lab model is on its own, beside what it cost to train.

The guided methods are judged against each other; this block says how far the base model is from the
world at all (does a caption alone give the scene it names, and does it look rendered), so a claim that
fails can be traced to the model rather than the method, and a retrained model can be compared.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch

from lib_guided.lab.caption_eval import caption_accuracy
from lib_guided.lab.world import Scene


def shown_path(folder: Path | None) -> str:
    """The model folder relative to the repository when it lies inside it (no machine's paths in docs)."""
    if not folder:
        return ""
    root = Path(__file__).resolve().parents[2]
    resolved = Path(folder).resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(folder)


def model_note(folder: Path) -> str:
    """Which training step the folder holds, from the training run's own records."""
    summary = folder / "lab_training.json"
    if summary.is_file():
        run = json.loads(summary.read_text())
        done, before = run.get("unet_steps_done", "?"), run.get("init_unet_steps")
        counted = isinstance(before, int) and isinstance(done, int)
        in_all = f" ({_unet_steps_in_all(run)} in all)" if counted else ""
        return f"final, {done} UNet steps{in_all}"
    log = folder / "train_log.txt"
    steps = (
        [
            line.split("unet step ")[1].split()[0]
            for line in log.read_text().splitlines()
            if "checkpoint at unet step" in line
        ]
        if log.is_file()
        else []
    )
    return f"intermediate checkpoint, UNet step {steps[-1]}" if steps else "unknown training state"


def _unet_steps_in_all(run: dict) -> int:
    """A lab_training.json's UNet steps, the run it was initialised from included."""
    return int(run.get("unet_steps_done", 0)) + int(run.get("init_unet_steps", 0))


def training_summary(folder: Path | None) -> dict:
    """UNet steps, training seconds and device from the folder's lab_training.json.

    A model initialised from an earlier run records that run's totals as init_unet_steps /
    init_unet_seconds, so they are added; files written before the device was recorded trained on CPU.
    """
    path = Path(folder) / "lab_training.json" if folder else None
    if path is None or not path.is_file():
        return {"unet_steps": None, "train_seconds": None, "device": None}
    r = json.loads(path.read_text(encoding="utf-8"))
    return {
        "unet_steps": _unet_steps_in_all(r),
        "train_seconds": round(float(r.get("unet_seconds", 0.0)) + float(r.get("init_unet_seconds", 0.0)), 1),
        "device": r.get("device", "cpu"),
    }


def text_only_row(synthesis: Sequence[dict]) -> dict | None:
    return next((r for r in synthesis if r["method"] == "text"), None)


def model_quality(
    classifier,
    text_images: torch.Tensor,
    scenes: Sequence[Scene],
    synthesis: Sequence[dict],
    folder: Path | None,
    real_images: torch.Tensor | None = None,
) -> dict:
    """The block: caption accuracy of the text-only samples (lib_guided.lab.caption_eval) with its object
    and background parts, their FDs from the synthesis table's text-only row, the training summary and,
    given the real images of the same scenes, the judge's accuracy on them (its ceiling)."""
    scored = caption_accuracy(classifier, text_images, scenes)
    row = text_only_row(synthesis) or {}
    out = {
        "caption_accuracy": scored["caption_accuracy"],
        "text_only_fd": {"realism_fd": row.get("realism_fd"), "texture_fd": row.get("texture_fd")},
        **training_summary(folder),
        "caption_object_accuracy": scored["object_accuracy"],
        "caption_background_accuracy": scored["background_accuracy"],
        "caption_images": scored["images"],
    }
    if real_images is not None:
        out["real_caption_accuracy"] = caption_accuracy(classifier, real_images, scenes)["caption_accuracy"]
    return out
