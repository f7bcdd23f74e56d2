"""The lab's judge: two small CNNs trained on the world's labels (see train_classifier.py).

``SceneNet`` reads a whole 64x64 scene (background, which shapes and colours are present, object count,
horizon). ``ObjectNet`` reads a crop around one object and names its shape and colour; the binding and
editing metrics use it.

The realism Fréchet distance is measured on SceneNet's first two blocks: the mean and standard deviation
over positions of every channel (96 numbers, like style statistics), standardised with fixed statistics
of real scenes stored with the weights. The last block's pooled features are semantic and vary so much
from scene to scene that, with the 24-64 images a CPU report can afford, real-vs-real sampling noise
swamps the real-vs-strokes gap (ratio 1.7-2.4 at N = 24-64, against 3.7-5.5 for these statistics).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lib_guided.lab.crops import crop
from lib_guided.lab.world import BACKGROUNDS, COLOUR_NAMES, MAX_OBJECTS, SHAPES

WEIGHTS = Path(__file__).with_name("classifier.safetensors")
FEATURES = 64
STAT_BLOCKS = 2  # blocks whose activation statistics form the Fréchet distance's feature space
# Scene head layout: background logits, shape presence, colour presence, object count logits, horizon.
SCENE_OUTPUTS = {
    "background": len(BACKGROUNDS),
    "shapes": len(SHAPES),
    "colours": len(COLOUR_NAMES),
    "count": MAX_OBJECTS,
    "horizon": 1,
}


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.GroupNorm(8, cout), nn.SiLU())


class SceneNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            _block(3, 16, 1),
            _block(16, 32, 2),
            _block(32, 48, 2),
            _block(48, FEATURES, 2),
            _block(FEATURES, FEATURES, 1),
        )
        self.head = nn.Linear(FEATURES, sum(SCENE_OUTPUTS.values()))

    def semantic(self, images: torch.Tensor) -> torch.Tensor:
        return self.trunk(images * 2 - 1).mean(dim=(2, 3))

    def statistics(self, images: torch.Tensor) -> torch.Tensor:
        """Per-channel mean and std over positions of the first STAT_BLOCKS blocks' activations."""
        h, stats = images * 2 - 1, []
        for block in self.trunk[:STAT_BLOCKS]:
            h = block(h)
            stats += [h.mean(dim=(2, 3)), h.std(dim=(2, 3))]
        return torch.cat(stats, dim=1)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.head(self.semantic(images))
        return dict(zip(SCENE_OUTPUTS, out.split(list(SCENE_OUTPUTS.values()), dim=1), strict=True))


class ObjectNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(_block(3, 16, 1), _block(16, 32, 2), _block(32, 64, 2), _block(64, 64, 1))
        self.head = nn.Linear(64, len(SHAPES) + len(COLOUR_NAMES))

    def forward(self, crops: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.trunk(crops * 2 - 1).mean(dim=(2, 3)))
        return out[:, : len(SHAPES)], out[:, len(SHAPES) :]


@dataclass
class ObjectPrediction:
    shape: torch.Tensor  # [N] indices into SHAPES
    colour: torch.Tensor  # [N] indices into COLOUR_NAMES

    def shape_names(self) -> list[str]:
        return [SHAPES[i] for i in self.shape.tolist()]

    def colour_names(self) -> list[str]:
        return [COLOUR_NAMES[i] for i in self.colour.tolist()]


class LabClassifier:
    """Both networks in eval mode, with the calls the metrics need (images [B, 3, 64, 64] in [0, 1])."""

    def __init__(
        self,
        scene: SceneNet,
        objects: ObjectNet,
        feature_mean: torch.Tensor | None = None,
        feature_std: torch.Tensor | None = None,
    ) -> None:
        self.scene, self.objects = scene.eval(), objects.eval()
        self.feature_mean, self.feature_std = feature_mean, feature_std

    @torch.no_grad()
    def raw_features(self, images: torch.Tensor, batch: int = 128) -> torch.Tensor:
        chunks = [images[i : i + batch].float() for i in range(0, len(images), batch)]
        return torch.cat([self.scene.statistics(chunk) for chunk in chunks])

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The Fréchet distance's feature space: raw_features standardised by the stored real-scene
        statistics, so every channel statistic weighs the same whatever its scale."""
        if self.feature_mean is None or self.feature_std is None:
            raise RuntimeError("classifier: no feature statistics; call set_feature_statistics first")
        return (self.raw_features(images) - self.feature_mean) / self.feature_std

    def set_feature_statistics(self, real_images: torch.Tensor) -> None:
        raw = self.raw_features(real_images)
        self.feature_mean, self.feature_std = raw.mean(0), raw.std(0).clamp_min(1e-6)

    @torch.no_grad()
    def classify_objects(self, images: torch.Tensor, boxes: torch.Tensor) -> ObjectPrediction:
        """Shape and colour of the object in each box; row i of ``boxes`` is looked up in image i."""
        shape, colour = self.objects(crop(images, boxes))
        return ObjectPrediction(shape.argmax(1), colour.argmax(1))

    def state_dict(self) -> dict[str, torch.Tensor]:
        parts = {
            "scene": self.scene.state_dict(),
            "objects": self.objects.state_dict(),
            "features": {"mean": self.feature_mean, "std": self.feature_std},
        }
        return {f"{p}.{k}": v.contiguous() for p, sd in parts.items() for k, v in sd.items() if v is not None}


def load_classifier(path: str | Path | None = None) -> LabClassifier:
    """The shipped weights (``lib_guided/lab/classifier.safetensors``) or another file."""
    from safetensors.torch import load_file

    path = Path(path or WEIGHTS)
    if not path.is_file():
        raise FileNotFoundError(
            f"lab classifier weights not found at {path}; train them with `python -m lib_guided.lab "
            "train-classifier`"
        )
    state = load_file(str(path))
    scene, objects = SceneNet(), ObjectNet()
    scene.load_state_dict({k[len("scene.") :]: v for k, v in state.items() if k.startswith("scene.")})
    objects.load_state_dict({k[len("objects.") :]: v for k, v in state.items() if k.startswith("objects.")})
    return LabClassifier(scene, objects, state.get("features.mean"), state.get("features.std"))
