"""The lab world, its tokenizer and the lab model configs: fast checks of the ground truth we rely on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lib_guided.lab import model_configs as mc
from lib_guided.lab import world
from lib_guided.lab.world import BACKGROUNDS, COLOUR_NAMES, SHAPES, make_dataset, make_scene, vocabulary

SEEDS = range(40)


def _hex_to_rgb(code: str) -> tuple[int, int, int]:
    return tuple(int(code[i : i + 2], 16) for i in (1, 3, 5))


def _colours_in(image: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(int(v) for v in c) for c in np.unique(image.reshape(-1, 3), axis=0)}


@pytest.fixture(scope="module")
def scenes():
    return [make_scene(s) for s in SEEDS]


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from lib_guided.lab.tokenizer import build_tokenizer

    return build_tokenizer(tmp_path_factory.mktemp("tokenizer"), vocabulary())


def test_same_seed_same_scene():
    a, b = make_scene(1234), make_scene(1234)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.strokes, b.strokes)
    assert a.caption == b.caption and a.stroke_palette == b.stroke_palette and a.labels == b.labels
    assert not np.array_equal(a.image, make_scene(1235).image)


def test_scene_arrays(scenes):
    for scene in scenes:
        assert scene.image.shape == scene.strokes.shape == (64, 64, 3)
        assert scene.image.dtype == scene.strokes.dtype == np.uint8
        assert scene.background in BACKGROUNDS and 1 <= len(scene.objects) <= 3


def test_objects_are_separate_and_match_their_boxes(scenes):
    for scene in scenes:
        union = np.zeros((64, 64), int)
        for obj in scene.objects:
            x0, y0, x1, y1 = obj["bbox"]
            ys, xs = np.nonzero(obj["mask"])
            assert obj["mask"].sum() > 40
            assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
            union += obj["mask"]
        assert union.max() <= 1


def test_caption_names_every_object_and_the_ground(scenes):
    words = set(vocabulary())
    for scene in scenes:
        assert scene.caption.endswith(f" on {scene.background}")
        assert scene.caption.count("a ") >= len(scene.objects)
        for obj in scene.objects:
            assert f"{obj['colour']} {obj['shape']}" in scene.caption
        assert set(scene.caption.split()) <= words


def test_labels_index_the_names(scenes):
    for scene in scenes:
        assert BACKGROUNDS[scene.labels["background"]] == scene.background
        assert [SHAPES[i] for i in scene.labels["shapes"]] == [o["shape"] for o in scene.objects]
        assert [COLOUR_NAMES[i] for i in scene.labels["colours"]] == [o["colour"] for o in scene.objects]


def test_strokes_are_flat_and_match_the_palette(scenes):
    for scene in scenes:
        colours = _colours_in(scene.strokes)
        assert colours == {_hex_to_rgb(h) for h in scene.stroke_palette}  # every pixel is painted
        assert len(colours) == 2 + len(scene.objects)  # one flat colour per region
        phrases = set(scene.stroke_palette.values())
        assert {"sky", scene.background} <= phrases
        assert {f"{o['colour']} {o['shape']}" for o in scene.objects} <= phrases


def test_strokes_are_rough_copies_of_the_scene(scenes):
    for scene in scenes:
        for k in np.unique(scene.stroke_regions):
            truth = scene.regions == k
            painted = scene.stroke_regions == k
            iou = (truth & painted).sum() / (truth | painted).sum()
            assert iou > 0.2  # wobbly and coarse, but the same region
            mean = scene.image[truth].mean(0)
            picked = scene.strokes[painted][0].astype(float)
            assert np.abs(picked - mean).max() < 50  # approximately the right colour
        assert not np.array_equal(scene.stroke_regions, scene.regions)  # not a tracing


def test_dataset_is_stacked_and_renders_each_scene_once(monkeypatch):
    # the work, not the wall clock (~2 ms per scene on an idle core, but CI machines differ): one render
    # per row, nothing drawn twice
    rendered = []

    def counting_make_scene(seed: int):
        rendered.append(seed)
        return make_scene(seed)

    monkeypatch.setattr(world, "make_scene", counting_make_scene)
    data = make_dataset(50, seed=3)
    assert len(rendered) == len(set(rendered)) == 50
    assert data["images"].shape == data["strokes"].shape == (50, 64, 64, 3)
    assert len(data["captions"]) == 50
    assert ((data["shapes"] >= 0).sum(1) == data["n_objects"]).all()
    assert data["seeds"].tolist() == rendered
    assert np.array_equal(make_scene(int(data["seeds"][7])).image, data["images"][7])


def test_tokenizer_one_token_per_word(tokenizer):
    for word in vocabulary():
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word


def test_tokenizer_caption_round_trip(tokenizer):
    caption = make_scene(7).caption
    ids = tokenizer(caption, padding="max_length", max_length=tokenizer.model_max_length).input_ids
    n = len(caption.split())
    assert ids[0] == tokenizer.bos_token_id and ids[n + 1] == tokenizer.eos_token_id
    assert ids[n + 1 :] == [tokenizer.eos_token_id] * (len(ids) - n - 1)  # padded with EOS, like CLIP
    assert tokenizer.decode(ids, skip_special_tokens=True) == caption
    assert tokenizer("").input_ids == [tokenizer.bos_token_id, tokenizer.eos_token_id]


def test_tokenizer_splits_unknown_words(tokenizer):
    ids = tokenizer("A Zebra-42!", add_special_tokens=False).input_ids
    assert len(ids) > 3 and tokenizer.unk_token_id not in ids


def test_lab_model_builds_runs_and_fits_in_30mb(tmp_path, tokenizer):
    from lib_guided.lab.pipeline_folder import load_components, save_pipeline

    torch.manual_seed(0)
    vae = mc.build_vae()
    unet = mc.build_unet()
    text = mc.build_text_encoder(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
    with torch.no_grad():
        latents = vae.encode(torch.zeros(2, 3, 64, 64)).latent_dist.mode()
        assert latents.shape == (2, mc.LATENT_CHANNELS, mc.LATENT_SIZE, mc.LATENT_SIZE)
        assert vae.decode(latents).sample.shape == (2, 3, 64, 64)
        ids = tokenizer(
            ["a red circle on grass", ""],
            padding="max_length",
            max_length=tokenizer.model_max_length,
            return_tensors="pt",
        ).input_ids
        context = text(ids).last_hidden_state
        assert context.shape == (2, tokenizer.model_max_length, mc.TEXT_HIDDEN)
        eps = unet(latents, torch.tensor([10, 900]), encoder_hidden_states=context).sample
        assert eps.shape == latents.shape
    total = sum(mc.parameter_count(m) for m in (vae, unet, text))
    assert total < 30e6 / 4  # float32

    save_pipeline(tmp_path, vae=vae, unet=unet, text_encoder=text)
    size = sum(f.stat().st_size for f in tmp_path.rglob("*") if f.is_file())
    assert size < 30 * 2**20
    loaded = load_components(tmp_path)
    assert loaded["scheduler"].config.beta_schedule == "scaled_linear"
    assert loaded["scheduler"].config.prediction_type == "epsilon"
    assert loaded["unet"].config.cross_attention_dim == loaded["text_encoder"].config.hidden_size
