"""The label-agnostic realism measure (lib_guided.lab.realism.texture_fd) on ground truth, no model needed.

Real scenes against other real scenes must be close, their flat stroke paintings and their Gaussian blur
far; the numbers in the comments were measured with these seeds and sizes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lib_guided.lab import realism
from lib_guided.lab.classifier_data import images_to_tensor
from lib_guided.lab.editing_eval import images_of, recoloured, tasks_for
from lib_guided.lab.synthesis_eval import score_synthesis
from lib_guided.lab.world import make_dataset, make_scene, scene_seed


@pytest.fixture(scope="module")
def rows() -> dict:
    return realism.sanity_rows(n=128, reference=256, seed=50)


@pytest.fixture(scope="module")
def reference() -> torch.Tensor:
    return realism.standardised_features(images_to_tensor(make_dataset(256, 51)["images"]))


def test_real_scenes_are_close_to_other_real_scenes(rows):
    assert rows["n"] == 128 and rows["reference"] == 256
    assert 0.0 < rows["real_vs_real"] < 6.0, rows  # measured 2.3 (2.2-2.9 over three seed pairs)


def test_stroke_paintings_are_far_from_real_scenes(rows):
    assert rows["strokes_vs_real"] > 50 * rows["real_vs_real"], rows  # measured 877 vs 2.3
    assert rows["strokes_vs_real"] > 300, rows


def test_blurred_real_scenes_are_far_from_real_scenes(rows):
    assert rows["blurred_vs_real"] > 20 * rows["real_vs_real"], rows  # measured 157 vs 2.3
    assert rows["blurred_vs_real"] > 50, rows


def test_more_blur_is_further_from_real(reference):
    real = images_to_tensor(make_dataset(64, 52)["images"])
    fds = [realism.texture_fd(realism.blurred(real, sigma), reference) for sigma in (0.4, 0.7, 1.0, 1.5)]
    assert fds == sorted(fds), fds
    assert realism.texture_fd(real, reference) < fds[0], fds


def test_changing_an_objects_colour_is_not_a_texture_change(reference, rows):
    # a label change with the rendering kept: each scene's object recoloured in pixel space
    scenes = [make_scene(scene_seed(50, i)) for i in range(128)]
    edited = images_of([recoloured(s, t) for s, t in zip(scenes, tasks_for(scenes), strict=True)])
    assert realism.texture_fd(edited, reference) < 3 * rows["real_vs_real"]  # measured 4.1 vs 2.3


def test_features_are_deterministic_and_finite_on_flat_images():
    flat = torch.full((4, 3, 64, 64), 0.5)
    noisy = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    images = torch.cat([flat, noisy])
    a, b = realism.texture_features(images), realism.texture_features(images)
    assert a.shape == (8, len(realism.SCALES) * len(realism.BANDS) * 6)
    assert torch.equal(a, b) and torch.isfinite(a).all()
    assert (a[:4, 0] < a[4:, 0]).all()  # finest-scale red energy: flat below noise


def test_texture_fd_accepts_images_or_their_features(reference):
    real = images_to_tensor(make_dataset(32, 53)["images"])
    ref_images = images_to_tensor(make_dataset(256, 51)["images"])
    assert realism.texture_fd(real, reference) == pytest.approx(realism.texture_fd(real, ref_images))


def test_synthesis_rows_get_the_texture_fd_beside_the_classifier_fd(reference):
    class FlatFeatures:  # stands in for the classifier: score_synthesis only calls features()
        def features(self, images):
            return images.mean(dim=(2, 3))

    scenes = [make_scene(scene_seed(54, i)) for i in range(16)]
    images = images_to_tensor(np.stack([s.image for s in scenes]))
    strokes = images_to_tensor(np.stack([s.strokes for s in scenes]))
    ref = FlatFeatures().features(images_to_tensor(make_dataset(64, 51)["images"]))
    without = score_synthesis(images, scenes, FlatFeatures(), ref)
    assert set(without) == {"faithfulness_mse", "realism_fd"}
    real_row = score_synthesis(images, scenes, FlatFeatures(), ref, reference)
    painted_row = score_synthesis(strokes, scenes, FlatFeatures(), ref, reference)
    assert real_row["realism_fd"] == without["realism_fd"]
    assert painted_row["texture_fd"] > 20 * real_row["texture_fd"]
