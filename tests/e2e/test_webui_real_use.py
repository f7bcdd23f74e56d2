"""Real use through the API: server paths, huge paintings, malformed payloads, long prompts with hires fix,
AND, edit mode past 75 tokens, SDXL's automatic mask, and the progress text of a gradient phase and of an
edit."""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest
import requests
from payloads import SIZE, as_array, guided, painting
from PIL import Image
from test_webui_api import BARN, STROKES, edit_img2img, txt2img

from lib_guided.strokes.io import NOT_IMAGE_DATA

# 80+ tokens: the phrase lands in the second 75-token chunk
LONG_PROMPT = ", ".join(["a red barn in a green field under a clear blue summer sky"] * 7)


@pytest.fixture(scope="module")
def baseline(sd1):
    return as_array(txt2img(sd1).image)


def _error(server, **named) -> str:
    with pytest.raises(RuntimeError) as err:
        txt2img(server, alwayson_scripts=guided(**named))
    return str(err.value)


def test_strings_are_image_data_never_server_paths(sd1, tmp_path):
    existing = tmp_path / "on_the_server.png"
    painting().save(existing)
    messages = {
        _error(sd1, strokes=text).split("Guided Synthesis: ")[1].split('"')[0].rstrip("\\")
        for text in (str(existing), str(tmp_path / "missing.png"), "/etc/passwd")
    }
    assert len(messages) == 1  # the same answer whether or not the file exists
    assert NOT_IMAGE_DATA[:40] in messages.pop()


@pytest.mark.parametrize(
    ("named", "field"),
    [
        ({"strokes": STROKES, "palette": 5}, "palette"),
        ({"strokes": STROKES, "palette": [None]}, "palette[0]"),
        ({"strokes": STROKES, "palette": ["abc"]}, "palette[0]"),
        (
            {"strokes": STROKES, "palette": [{"color": "#d03030", "phrase": "salt AND pepper"}]},
            "palette[0].phrase",
        ),
        ({"strokes": STROKES, "blur_size": 20}, "blur_size"),
        ({"strokes": STROKES, "decoder": "tiny"}, "decoder"),
        ({"strokes": STROKES, "decoder": "full-checkpointed"}, "decoder"),
        ({"strokes": STROKES, "adam_steps": "1e400"}, "adam_steps"),
        ({"strokes": STROKES, "adam_steps": 10**400}, "adam_steps"),
        (
            {"strokes": STROKES, "palette": [{"color": "#d03030", "phrase": "barn", "weight": 10**400}]},
            "palette[0].weight",
        ),
    ],
)
def test_more_bad_payloads_are_named_errors(sd1, baseline, named, field):
    assert f"Guided Synthesis: {field}:" in _error(sd1, **named)
    assert np.array_equal(as_array(txt2img(sd1).image), baseline)


def test_a_huge_painting_is_refused_from_its_header(sd1, baseline):
    buffer = io.BytesIO()
    Image.new("RGB", (6000, 6000), (208, 48, 48)).save(buffer, "PNG")  # ~100 KB of PNG, 36 MP decoded
    import base64

    message = _error(sd1, strokes=base64.b64encode(buffer.getvalue()).decode())
    assert "strokes: the painting is 6000x6000" in message
    assert np.array_equal(as_array(txt2img(sd1).image), baseline)


def test_bindings_with_and_are_refused_and_colour_only_guidance_runs(sd1):
    with pytest.raises(RuntimeError, match="Guided Synthesis: prompt: binding phrases to colours does not"):
        txt2img(sd1, prompt="a red barn AND a lake", alwayson_scripts=guided(strokes=STROKES, palette=BARN))
    result = txt2img(sd1, prompt="a red barn AND a lake", alwayson_scripts=guided(strokes=STROKES))
    assert "Guided stroke loss:" in result.info["infotexts"][0]


@pytest.mark.parametrize("hires_pass", ["second", "both"])
def test_hires_second_pass_with_a_long_prompt_and_a_phrase(sd1, hires_pass):
    result = txt2img(
        sd1,
        prompt=LONG_PROMPT,
        enable_hr=True,
        hr_scale=1.5,
        hr_upscaler="Latent",
        denoising_strength=0.5,
        alwayson_scripts=guided(
            strokes=STROKES, hires_pass=hires_pass, palette=[{"color": "#3050c0", "phrase": "lake"}]
        ),
    )
    assert result.image.size == (int(SIZE * 1.5), int(SIZE * 1.5))
    info = result.info["infotexts"][0]
    assert "Guided stroke loss:" in info
    assert info.splitlines()[0].endswith(", lake")  # the phrase was appended past token 75 ...
    assert "Hires prompt:" not in info  # ... and the hires pass encoded the same prompt (else it is listed)


def test_edit_mode_with_a_prompt_over_75_tokens(sd1):
    result = edit_img2img(
        sd1,
        prompt=LONG_PROMPT.replace("red", "blue"),
        alwayson_scripts=guided(mode="edit", source_prompt=LONG_PROMPT),
    )
    assert "Guided inversion evals:" in result.info["infotexts"][0]


@pytest.mark.parametrize("checkpoint", ["sd2v", "sdxl"])
def test_long_prompt_with_hires_and_edit_on_sd2_v_and_sdxl(request, checkpoint):
    server = request.getfixturevalue(checkpoint)
    lake = [{"color": "#3050c0", "phrase": "lake"}]
    result = txt2img(
        server,
        prompt=LONG_PROMPT,
        enable_hr=True,
        hr_scale=1.5,
        hr_upscaler="Latent",
        denoising_strength=0.5,
        alwayson_scripts=guided(strokes=STROKES, hires_pass="both", palette=lake),
    )
    info = result.info["infotexts"][0]
    assert "Guided stroke loss:" in info and info.splitlines()[0].endswith(", lake")
    edited = edit_img2img(
        server,
        prompt=LONG_PROMPT.replace("red", "blue"),
        alwayson_scripts=guided(mode="edit", source_prompt=LONG_PROMPT),
    )
    assert "Guided inversion evals:" in edited.info["infotexts"][0]


def test_sdxl_edit_with_the_automatic_mask(sdxl):
    result = edit_img2img(
        sdxl, alwayson_scripts=guided(mode="edit", source_prompt="a red barn", blend_mask="auto")
    )
    assert "Guided blend mask: auto" in result.info["infotexts"][0]
    assert "Guided auto mask share:" in result.info["infotexts"][0]
    # the mask comes back beside the edit: black and white, some of the image repainted, not all of it
    assert len(result.images) == 2
    mask = np.asarray(result.images[1].convert("L"))
    assert mask.shape == (SIZE, SIZE) and set(np.unique(mask).tolist()) <= {0, 255}
    assert 0 < (mask == 255).mean() < 1


def test_progress_text_names_the_gradient_phase(sd1):
    seen: set[str] = set()
    done = threading.Event()

    def generate():
        try:
            txt2img(sd1, steps=8, alwayson_scripts=guided(strokes=STROKES, adam_steps=60))
        finally:
            done.set()

    worker = threading.Thread(target=generate)
    worker.start()
    while not done.is_set():
        text = requests.get(f"{sd1.url}/sdapi/v1/progress", timeout=10).json().get("textinfo") or ""
        if text.startswith("Guided strokes"):
            seen.add(text)
        time.sleep(0.05)
    worker.join()
    assert any("phase 1 of 3, Adam step" in t for t in seen), seen
    assert len(seen) > 1  # it moves


def reconstruction_psnr(result) -> float:
    info = result.info["infotexts"][0]
    return float(info.split("Guided reconstruction PSNR: ")[1].split(",")[0])


@pytest.mark.parametrize("checkpoint", ["sd1", "sd2v", "sdxl"])
def test_edit_attention_injection_changes_the_edit_and_keeps_the_reconstruction(request, checkpoint):
    server = request.getfixturevalue(checkpoint)
    args = {"mode": "edit", "source_prompt": "a red barn", "return_reconstruction": True}
    off = edit_img2img(server, alwayson_scripts=guided(**args, attention_injection=0))
    on = edit_img2img(server, alwayson_scripts=guided(**args))  # on by default
    info = on.info["infotexts"][0]
    assert "Guided attention injection: 0.6" in info and "Guided injection skipped" not in info
    assert len(on.images) == 2  # the reconstruction came from the edit's own batched calls
    assert not np.array_equal(as_array(on.images[0]), as_array(off.images[0]))
    # the reconstruction branch is the plain round trip's computation, batched beside the edit. Each
    # request encodes the image with its own sample of the VAE's posterior (the WebUI samples it), so
    # reconstruction PSNRs vary between identical requests: the batched one may differ from the plain one
    # by at most that spread (a second plain request) plus 1 dB
    again = edit_img2img(server, alwayson_scripts=guided(**args, attention_injection=0))
    spread = abs(reconstruction_psnr(again) - reconstruction_psnr(off))
    assert abs(reconstruction_psnr(on) - reconstruction_psnr(off)) <= spread + 1.0, spread
    other = edit_img2img(server, prompt="a big blue barn by a lake", alwayson_scripts=guided(**args))
    assert "Guided injection skipped: prompts differ in token count" in other.info["infotexts"][0]


def test_edit_variants_from_one_inversion_with_eta(sd1):
    args = {"mode": "edit", "source_prompt": "a red barn"}
    varied = edit_img2img(sd1, batch_size=2, alwayson_scripts=guided(**args, eta=0.8))
    assert len(varied.images) == 2 and "Guided eta: 0.8" in varied.info["infotexts"][0]
    assert not np.array_equal(as_array(varied.images[0]), as_array(varied.images[1]))
    same = edit_img2img(sd1, batch_size=2, alwayson_scripts=guided(**args))  # eta 0: deterministic
    assert np.abs(as_array(same.images[0]) - as_array(same.images[1])).max() <= 1 / 255


def test_edit_progress_names_inversion_and_edit_and_moves_the_bar(sd1):
    seen: dict[str, float] = {}
    done = threading.Event()

    def edit():
        try:
            edit_img2img(
                sd1,
                steps=12,
                alwayson_scripts=guided(mode="edit", source_prompt="a red barn", solver="aidi-a"),
            )
        finally:
            done.set()

    worker = threading.Thread(target=edit)
    worker.start()
    while not done.is_set():
        answer = requests.get(f"{sd1.url}/sdapi/v1/progress", timeout=10).json()
        text = answer.get("textinfo") or ""
        if text.startswith("Guided edit"):
            seen[text] = max(seen.get(text, 0.0), float(answer.get("progress") or 0.0))
        time.sleep(0.02)
    worker.join()
    inverting = [t for t in seen if t.startswith("Guided edit: inverting, step")]
    assert inverting and all("model evaluations" in t for t in inverting), seen
    assert any(t.startswith("Guided edit: editing, step") for t in seen), seen
    assert len({round(p, 3) for p in seen.values()}) > 1  # the bar moves with the steps


def test_the_linear_decoder_fit_is_kept_on_disk_per_checkpoint(sd1):
    import hashlib
    import json
    import os
    from pathlib import Path

    txt2img(sd1, alwayson_scripts=guided(strokes=STROKES, decoder="linear-anchored", adam_steps=2))
    models = Path(os.environ["WEBUI_ROOT"]) / "models"
    digest = hashlib.sha256((models / "Stable-diffusion" / "tiny-sd1.safetensors").read_bytes()).hexdigest()
    keys = [
        json.loads(p.read_text())["key"] for p in (models / "GuidedSynthesis").glob("linear-decoder-*.json")
    ]
    # the WebUI's sha256 of the checkpoint (with --no-hashing: its path, size and mtime)
    assert any(key == digest or "tiny-sd1" in key for key in keys), keys
