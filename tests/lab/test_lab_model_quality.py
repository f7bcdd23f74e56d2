"""report.json's model_quality block: the caption judge on ground truth, the training summary, the table.

No diffusion model is needed: real scenes stand in for text-only samples (the judge must pass them) and
real scenes under another scene's caption for a model that ignores its prompt (the judge must fail them).
The judge tests skip, with the reason, only when the shipped classifier file is absent.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from lib_guided.adapters.diffusers_model import SHIPPED_MODEL_FOLDER as MODEL_FOLDER
from lib_guided.lab.caption_eval import caption_accuracy, caption_hits, proposals
from lib_guided.lab.classifier import WEIGHTS, load_classifier
from lib_guided.lab.eval_scenes import eval_scenes, stack_images
from lib_guided.lab.model_quality import model_note, model_quality, shown_path, training_summary
from lib_guided.lab.report_markdown import _model_quality
from lib_guided.lab.world import make_scene, scene_seed

needs_classifier = pytest.mark.skipif(
    not WEIGHTS.is_file(),
    reason=f"{WEIGHTS} is missing: run `python -m lib_guided.lab train-classifier` to recreate it",
)


@pytest.fixture(scope="module")
def classifier():
    return load_classifier()


@pytest.fixture(scope="module")
def scenes():
    return eval_scenes(96)


def test_proposals_find_each_object_of_a_real_scene_once():
    for i in range(150):
        scene = make_scene(scene_seed(7, i))
        boxes = proposals(scene.image)
        assert len(boxes) == len(scene.objects), (scene.caption, boxes)
        for obj in scene.objects:  # every object's box holds one proposal's centre
            x0, y0, x1, y1 = obj["bbox"]
            assert any(x0 <= (b[0] + b[2]) / 2 <= x1 and y0 <= (b[1] + b[3]) / 2 <= y1 for b in boxes)


def test_no_proposals_in_sky_and_ground_alone():
    scene = make_scene(scene_seed(7, 0))
    empty = scene.strokes.copy()  # the stroke painting with every object painted over with ground
    ground = scene.strokes[scene.stroke_regions == 1][0]
    empty[scene.stroke_regions >= 2] = ground
    assert proposals(empty) == []
    assert proposals(np.zeros((64, 64, 3), np.uint8)) == []


@needs_classifier
def test_real_scenes_show_their_captions(classifier, scenes):
    scored = caption_accuracy(classifier, stack_images(scenes), scenes)
    assert scored["images"] == 96
    assert scored["caption_accuracy"] >= 0.95, scored  # measured 1.0 on 200 eval scenes


@needs_classifier
def test_real_scenes_do_not_show_another_scenes_caption(classifier, scenes):
    shifted = scenes[1:] + scenes[:1]
    scored = caption_accuracy(classifier, stack_images(scenes), shifted)
    assert scored["caption_accuracy"] <= 0.1, scored  # measured 0.01 on 200
    assert scored["object_accuracy"] <= 0.3, scored  # measured 0.11: shape and colour agree by chance


@needs_classifier
def test_a_caption_needs_every_object_and_a_second_copy_needs_a_second_blob(classifier, scenes):
    one = next(s for s in scenes if len(s.objects) == 1)
    twice = type(one)(**{**one.__dict__, "objects": [one.objects[0], one.objects[0]]})
    hits = caption_hits(classifier, stack_images([one, one]), [one, twice])
    assert hits["found"].tolist() == [1, 1] and hits["asked"].tolist() == [1, 2]
    assert caption_accuracy(classifier, stack_images([one, one]), [one, twice])["caption_accuracy"] == 0.5


def _training_file(tmp_path, **fields):
    (tmp_path / "lab_training.json").write_text(json.dumps(fields))
    return tmp_path


def test_training_summary_adds_the_initial_run_and_defaults_to_cpu(tmp_path):
    folder = _training_file(
        tmp_path, unet_steps_done=300, unet_seconds=120.3, init_unet_steps=5685, init_unet_seconds=2430.7
    )
    assert training_summary(folder) == {"unet_steps": 5985, "train_seconds": 2551.0, "device": "cpu"}
    gpu = "cuda (NVIDIA H200)"
    folder = _training_file(tmp_path, unet_steps_done=10, unet_seconds=5.0, device=gpu)
    assert training_summary(folder) == {"unet_steps": 10, "train_seconds": 5.0, "device": gpu}
    nothing = {"unet_steps": None, "train_seconds": None, "device": None}
    assert training_summary(tmp_path / "missing") == nothing


def test_model_note_counts_the_initial_run_and_the_path_is_the_repositorys(tmp_path):
    folder = _training_file(tmp_path, unet_steps_done=300, unet_seconds=1.0, init_unet_steps=5685)
    assert model_note(folder) == "final, 300 UNet steps (5985 in all)"
    folder = _training_file(tmp_path, unet_steps_done=10, unet_seconds=1.0)
    assert model_note(folder) == "final, 10 UNet steps"
    # a report run from any checkout names the shipped model the same way; other folders as given
    assert shown_path(MODEL_FOLDER.resolve()) == "lib_guided/lab/model"
    assert shown_path(tmp_path) == str(tmp_path)


def test_training_summary_of_the_shipped_model():
    recorded = json.loads((MODEL_FOLDER / "lab_training.json").read_text())
    summary = training_summary(MODEL_FOLDER)
    assert summary["unet_steps"] == recorded["unet_steps_done"] + recorded.get("init_unet_steps", 0)
    assert summary["train_seconds"] >= recorded["unet_seconds"] > 0
    assert summary["device"] == recorded.get("device", "cpu")


@needs_classifier
def test_model_quality_block_and_its_markdown(classifier, scenes, tmp_path):
    folder = _training_file(tmp_path, unet_steps_done=100, unet_seconds=50.0)
    synthesis = [
        {"method": "sdedit", "realism_fd": 9.0, "texture_fd": 90.0},
        {"method": "text", "setting": "text only", "realism_fd": 61.4, "texture_fd": 133.6},
    ]
    real = stack_images(scenes[:24])
    block = model_quality(classifier, real, scenes[:24], synthesis, folder, real_images=real)
    assert {"caption_accuracy", "text_only_fd", "unet_steps", "train_seconds", "device"} <= set(block)
    assert block["text_only_fd"] == {"realism_fd": 61.4, "texture_fd": 133.6}
    assert (block["unet_steps"], block["train_seconds"], block["device"]) == (100, 50.0, "cpu")
    assert block["caption_accuracy"] == block["real_caption_accuracy"] >= 0.95
    text = "\n".join(_model_quality(block))
    assert "## Model quality" in text and "133.6" in text and "100 training steps" in text
    assert _model_quality(None) == []
