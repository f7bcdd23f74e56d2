"""The lab's metrics discriminate: identities on small tensors, and the shipped classifier on ground truth.

No diffusion model is needed. The classifier tests skip (with the reason) only when the shipped weights
file is absent; `python -m lib_guided.lab train-classifier` recreates it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lib_guided.images import psnr
from lib_guided.lab.binding_eval import binding_accuracy
from lib_guided.lab.classifier import WEIGHTS, load_classifier
from lib_guided.lab.crops import crop, painted_box, region_box
from lib_guided.lab.editing_eval import edit_scores, images_of, recoloured, tasks_for
from lib_guided.lab.eval_scenes import eval_scenes, object_bindings, reference_images, stack_images
from lib_guided.lab.metrics import faithfulness_mse, frechet_distance, masked_psnr, ssim
from lib_guided.lab.synthesis_eval import sdedit_at

needs_classifier = pytest.mark.skipif(
    not WEIGHTS.is_file(),
    reason=f"{WEIGHTS} is missing: run `python -m lib_guided.lab train-classifier` to recreate it",
)


def _images(n: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


# -- pure metric identities ---------------------------------------------------------------------------


def test_faithfulness_is_zero_on_the_strokes_and_grows_with_distortion():
    strokes = stack_images(eval_scenes(4), "strokes")
    assert torch.allclose(faithfulness_mse(strokes, strokes), torch.zeros(4))
    noise = torch.randn(strokes.shape, generator=torch.Generator().manual_seed(0))
    noisy = [(strokes + a * noise).clamp(0, 1) for a in (0.1, 0.3, 1.0)]
    errors = [float(faithfulness_mse(x, strokes).mean()) for x in noisy]
    shifted = [float(faithfulness_mse(strokes.roll(k, dims=-1), strokes).mean()) for k in (1, 4, 12)]
    assert 0 < errors[0] < errors[1] < errors[2]
    assert 0 < shifted[0] < shifted[1] < shifted[2]


def test_frechet_distance_identities():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(500, 8, generator=gen)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    # Gaussians with the same covariance: FD = |mu_a - mu_b|^2
    assert frechet_distance(a, a + 3.0) == pytest.approx(9.0 * 8, rel=1e-6)
    # N(0, I) vs N(0, 4I): tr(I + 4I - 2 * 2I) = D, estimated from samples
    b, c = torch.randn(4000, 8, generator=gen), 2 * torch.randn(4000, 8, generator=gen)
    assert frechet_distance(b, c) == pytest.approx(8.0, rel=0.15)
    assert frechet_distance(b, c) == pytest.approx(frechet_distance(c, b), rel=1e-6)


def test_ssim_identities():
    x, y = _images(2, 0), _images(2, 1)
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-6)
    assert torch.allclose(ssim(x, y), ssim(y, x), atol=1e-6)
    assert float(ssim(x, y).max()) < 0.1  # independent noise images share no structure
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    scores = [float(ssim((x + s * noise).clamp(0, 1), x).mean()) for s in (0.01, 0.05, 0.2)]
    assert 1 > scores[0] > scores[1] > scores[2]


def test_masked_psnr_ignores_the_masked_region():
    x = _images(1, 0)
    y = x.clone()
    y[..., 10:20, 10:20] = 1 - y[..., 10:20, 10:20]
    keep = torch.ones(1, 1, 64, 64)
    assert math.isinf(float(masked_psnr(x, x, keep)))
    assert float(masked_psnr(x, y, keep)) == pytest.approx(psnr(x, y), abs=1e-4)
    keep[..., 10:20, 10:20] = 0
    assert math.isinf(float(masked_psnr(x, y, keep)))


def test_sdedit_interpolation():
    rows = [{"faithfulness_mse": 0.01, "realism_fd": 10.0}, {"faithfulness_mse": 0.03, "realism_fd": 2.0}]
    assert sdedit_at(0.02, rows) == pytest.approx(6.0)
    assert sdedit_at(0.0, rows) == 10.0 and sdedit_at(1.0, rows) == 2.0


def test_crops_centre_the_painted_region():
    scene = eval_scenes(1)[0]
    box = painted_box(scene, 0)
    assert box == region_box(scene.stroke_regions, 2)
    image = torch.zeros(1, 3, 64, 64)
    x0, y0, x1, y1 = box
    image[..., y0:y1, x0:x1] = 1.0
    out = crop(image, torch.tensor([box], dtype=torch.float32))
    assert out.shape == (1, 3, 24, 24)
    assert float(out[..., 12, 12].min()) == pytest.approx(1.0)  # the box's centre
    assert float(out[..., 0, 0].max()) < 0.5  # the margin around it


def test_bindings_name_every_object_and_edits_change_one_colour_word():
    for scene in eval_scenes(20):
        assert sorted(b["phrase"] for b in object_bindings(scene)) == sorted(
            f"a {o['colour']} {o['shape']}" for o in scene.objects
        )
        assert all(b["phrase"] in scene.caption for b in object_bindings(scene))  # nothing appended
        task = tasks_for([scene])[0]
        old = scene.objects[task.index]["colour"]
        assert task.new_colour != old
        assert task.source_prompt == scene.caption != task.edit_prompt
        assert len(task.edit_prompt.split()) == len(task.source_prompt.split())


# -- the shipped classifier on ground truth ----------------------------------------------------------


@pytest.fixture(scope="module")
def classifier():
    return load_classifier()


@needs_classifier
def test_fd_real_vs_real_is_small_and_strokes_vs_real_is_large(classifier):
    scenes = eval_scenes(64)
    reference = classifier.features(reference_images(512))
    real = frechet_distance(classifier.features(stack_images(scenes)), reference)
    strokes = frechet_distance(classifier.features(stack_images(scenes, "strokes")), reference)
    noisy = frechet_distance(
        classifier.features(
            (
                stack_images(scenes)
                + 0.1 * torch.randn(64, 3, 64, 64, generator=torch.Generator().manual_seed(0))
            ).clamp(0, 1)
        ),
        reference,
    )
    assert strokes > 5 * real
    assert noisy > 2 * real


@needs_classifier
def test_binding_metric_on_ground_truth_scenes(classifier):
    scenes = eval_scenes(64)
    real = binding_accuracy(classifier, stack_images(scenes), scenes)
    assert real["accuracy"] >= 0.95 and real["colour_accuracy"] >= 0.98
    # every object swapped for another scene's: the regions no longer hold the bound shapes
    shuffled = binding_accuracy(classifier, stack_images(scenes).roll(1, dims=0), scenes)
    assert shuffled["accuracy"] < 0.6


@needs_classifier
def test_edit_metric_on_ground_truth(classifier):
    scenes = eval_scenes(48)
    tasks = tasks_for(scenes)
    originals = stack_images(scenes)
    truth = images_of([recoloured(s, t) for s, t in zip(scenes, tasks, strict=True)])
    edited = edit_scores(classifier, truth, originals, scenes, tasks)
    unedited = edit_scores(classifier, originals, originals, scenes, tasks)
    assert float(edited["success"].float().mean()) >= 0.9
    assert torch.isinf(edited["background_psnr"]).all()  # nothing outside the object changed
    assert float(unedited["success"].float().mean()) == 0.0
    # a global change is caught by the background PSNR
    darker = edit_scores(classifier, truth * 0.9, originals, scenes, tasks)
    assert float(darker["background_psnr"].max()) < 30


def test_recolouring_only_touches_the_object():
    scene = eval_scenes(1)[0]
    task = tasks_for([scene])[0]
    changed = np.any(recoloured(scene, task) != scene.image, axis=-1)
    assert changed.any() and not (changed & ~scene.objects[task.index]["mask"]).any()
