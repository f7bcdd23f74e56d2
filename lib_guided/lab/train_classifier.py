"""Train the lab classifier from a seed: ``python -m lib_guided.lab train-classifier [--out FILE]``.

Both networks train on scenes of their own dataset seeds (never the diffusion model's training or the
lab's evaluation scenes) and are validated on another one. One thread, fixed seeds: the same command
gives the same weights on the same torch build.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from lib_guided.lab.classifier import WEIGHTS, LabClassifier, ObjectNet, SceneNet
from lib_guided.lab.classifier_data import ClassifierData, build_data
from lib_guided.lab.crops import crop
from lib_guided.strokes.painting import gaussian_blur

TRAIN_DATASET_SEED = 100
VALIDATION_DATASET_SEED = 101
PLAN = {"train_scenes": 6000, "val_scenes": 1000, "scene_steps": 1500, "object_steps": 1500, "batch": 64}


def _schedule(optimiser: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then cosine decay to zero."""
    warmup = max(steps // 20, 1)

    def factor(step: int) -> float:
        return min((step + 1) / warmup, 0.5 * (1 + math.cos(math.pi * step / steps)))

    return torch.optim.lr_scheduler.LambdaLR(optimiser, factor)


def scene_loss(net: SceneNet, data: ClassifierData, index: torch.Tensor, flip: bool) -> torch.Tensor:
    images = data.float_images(index)
    if flip:  # every label is invariant to a left-right mirror
        images = images.flip(-1)
    out = net(images)
    return (
        F.cross_entropy(out["background"], data.background[index])
        + F.binary_cross_entropy_with_logits(out["shapes"], data.shapes_present[index])
        + F.binary_cross_entropy_with_logits(out["colours"], data.colours_present[index])
        + F.cross_entropy(out["count"], data.count[index])
        + 10 * F.mse_loss(out["horizon"][:, 0], data.horizon[index])
    )


def jittered_boxes(data: ClassifierData, rows: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """The true or the painted box (half each), every side moved by up to 2 pixels: the metrics crop
    painted regions, which miss the object by about that much."""
    use_painted = torch.rand(len(rows), generator=gen) < 0.5
    boxes = torch.where(use_painted[:, None], data.painted_box[rows], data.true_box[rows])
    return boxes + torch.randint(-2, 3, boxes.shape, generator=gen).float()


def soften(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Blur half the batch a little: generated images come out of a VAE decoder, softer than renders."""
    sigma = float(torch.empty(1).uniform_(0.3, 1.2, generator=gen))
    blurred = gaussian_blur(images, 5, sigma)
    pick = (torch.rand(len(images), 1, 1, 1, generator=gen) < 0.5).float()
    return pick * blurred + (1 - pick) * images


def object_loss(net: ObjectNet, data: ClassifierData, rows: torch.Tensor, gen: torch.Generator):
    images = soften(data.float_images(data.object_image[rows]), gen)
    shape, colour = net(crop(images, jittered_boxes(data, rows, gen)))
    return F.cross_entropy(shape, data.shape[rows]) + F.cross_entropy(colour, data.colour[rows])


def _train(
    net: torch.nn.Module,
    loss_fn: Callable[[torch.Tensor, int], torch.Tensor],
    population: int,
    steps: int,
    batch: int,
    gen: torch.Generator,
    log: Callable[[str], None],
    name: str,
) -> None:
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = _schedule(optimiser, steps)
    net.train()
    running = None
    for step in range(steps):
        index = torch.randint(0, population, (batch,), generator=gen)
        loss = loss_fn(index, step)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        running = loss.item() if running is None else 0.95 * running + 0.05 * loss.item()
        if step % 100 == 0 or step == steps - 1:
            log(f"{name} step {step}/{steps} loss {running:.4f}")
    net.eval()


@torch.no_grad()
def validate(model: LabClassifier, data: ClassifierData) -> dict[str, float]:
    """Accuracies on unseen scenes; objects are read from their painted boxes, as the metrics do."""
    images = data.float_images(torch.arange(len(data.images)))
    out = model.scene(images)
    objects = model.classify_objects(images[data.object_image], data.painted_box)
    softened = gaussian_blur(images, 5, 1.0)
    blurred_objects = model.classify_objects(softened[data.object_image], data.painted_box)
    return {
        "background": float((out["background"].argmax(1) == data.background).float().mean()),
        "shapes_present": float(((out["shapes"] > 0).float() == data.shapes_present).float().mean()),
        "colours_present": float(((out["colours"] > 0).float() == data.colours_present).float().mean()),
        "count": float((out["count"].argmax(1) == data.count).float().mean()),
        "horizon_mae_px": float((out["horizon"][:, 0] - data.horizon).abs().mean() * 64),
        "object_shape": float((objects.shape == data.shape).float().mean()),
        "object_colour": float((objects.colour == data.colour).float().mean()),
        "object_shape_blurred": float((blurred_objects.shape == data.shape).float().mean()),
    }


def train_classifier(
    out: Path = WEIGHTS, seed: int = 0, plan: dict | None = None, log: Callable[[str], None] = print
) -> dict:
    """Train both networks, save them to ``out`` (safetensors) and return the validation report."""
    from safetensors.torch import save_file

    plan = {**PLAN, **(plan or {})}
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    started = time.time()
    train = build_data(plan["train_scenes"], TRAIN_DATASET_SEED)
    val = build_data(plan["val_scenes"], VALIDATION_DATASET_SEED)
    log(f"data: {len(train.images)} train / {len(val.images)} val scenes, {time.time() - started:.1f} s")

    scene_net, object_net = SceneNet(), ObjectNet()
    _train(
        scene_net,
        lambda idx, step: scene_loss(scene_net, train, idx, flip=step % 2 == 1),
        len(train.images),
        plan["scene_steps"],
        plan["batch"],
        gen,
        log,
        "scene",
    )
    _train(
        object_net,
        lambda rows, _: object_loss(object_net, train, rows, gen),
        len(train.shape),
        plan["object_steps"],
        2 * plan["batch"],
        gen,
        log,
        "object",
    )
    model = LabClassifier(scene_net, object_net)
    model.set_feature_statistics(val.float_images(torch.arange(len(val.images))))
    report = {
        "seed": seed,
        "plan": plan,
        "seconds": round(time.time() - started, 1),
        "validation": validate(model, val),
    }
    metadata = {"report": json.dumps(report)}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_file(model.state_dict(), str(out), metadata=metadata)
    log(f"saved {out}: {json.dumps(report['validation'])}")
    return report
