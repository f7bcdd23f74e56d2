"""The extension in a real WebUI v1.10.x, driven through the webuiapi client (tiny random checkpoints).

Random weights cannot show image quality (the lab does that); these tests show the integration:
the guidance acts, turns off exactly, survives bad input, interrupts and failures without leaving
state behind, and speaks the API and infotext formats.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import requests
from payloads import SIZE, as_array, b64, guided, painting, stroke_mse

from lib_guided.params import FIELDS, GuidedParams

STROKES = b64(painting())
BARN = [{"color": "#d03030", "phrase": "red barn", "weight": 1.0}]


def txt2img(server, seed=1, sampler="Euler", prompt="a red barn", steps=6, **kw):
    return server.api.txt2img(
        prompt=prompt,
        seed=seed,
        sampler_name=sampler,
        width=SIZE,
        height=SIZE,
        steps=steps,
        cfg_scale=5,
        **kw,
    )


@pytest.fixture(scope="module")
def baseline(sd1):
    return as_array(txt2img(sd1).image)


@pytest.mark.parametrize("sampler", ["Euler", "Euler a", "DPM++ 2M", "DDIM", "UniPC"])
def test_strokes_pull_every_sampler_toward_the_painting(sd1, sampler):
    plain = txt2img(sd1, sampler=sampler)
    result = txt2img(sd1, sampler=sampler, alwayson_scripts=guided(strokes=STROKES))
    assert stroke_mse(result.image) < stroke_mse(plain.image)
    info = result.info["infotexts"][0]
    assert "Guided stroke loss:" in info and "Guided mode: strokes" in info


def test_zero_strength_and_zero_region_weight_equal_the_disabled_output(sd1, baseline):
    off = txt2img(sd1, alwayson_scripts=guided(strokes=STROKES, strength=0.0))
    assert np.array_equal(as_array(off.image), baseline)
    # the phrase is already in the prompt, so only region control could change the image
    zero = txt2img(
        sd1, alwayson_scripts=guided(strokes=STROKES, strength=0.0, palette=BARN, region_weight=0.0)
    )
    assert np.array_equal(as_array(zero.image), baseline)
    bound = txt2img(
        sd1, alwayson_scripts=guided(strokes=STROKES, strength=0.0, palette=BARN, region_weight=3.0)
    )
    assert not np.array_equal(as_array(bound.image), baseline)


def test_named_dict_and_positional_args_agree(sd1):
    named = txt2img(sd1, alwayson_scripts=guided(strokes=STROKES, palette=BARN, adam_steps=4))
    values = {f.name: f.default for f in FIELDS}
    values.update(enabled=True, strokes=STROKES, palette=[["#d03030", "red barn", 1.0]], adam_steps=4)
    positional = txt2img(
        sd1, alwayson_scripts={"guided synthesis": {"args": [values[f.name] for f in FIELDS]}}
    )
    assert np.array_equal(as_array(named.image), as_array(positional.image))


def test_infotext_round_trips_through_png_info(sd1):
    result = txt2img(sd1, alwayson_scripts=guided(strokes=STROKES, palette=BARN, lr=0.05, region_weight=1.5))
    png = result.json["images"][0]  # the PNG as the API sent it, with its text chunk
    info = requests.post(f"{sd1.url}/sdapi/v1/png-info", json={"image": png}, timeout=60).json()
    items = info["parameters"]
    assert items["Guided strokes"].startswith("not stored")
    restored = GuidedParams(**{f.name: items[f.infotext] for f in FIELDS if f.infotext in items})
    assert restored == GuidedParams(enabled=True, palette=BARN, lr=0.05, region_weight=1.5)


@pytest.mark.parametrize(
    ("named", "field"),
    [
        ({"strokes": "data:image/png;base64,@@@"}, "strokes"),
        ({"strokes": STROKES, "palette": [{"color": "#00ff00", "phrase": "tree"}]}, "palette[0].color"),
        ({"strokes": STROKES, "lr": 5}, "lr"),
        ({"strokes": b64(painting(SIZE * 2, SIZE))}, "strokes"),
        ({"strokes": STROKES, "wieght": 1}, "wieght"),
        ({"mode": "edit"}, "mode"),
    ],
)
def test_bad_payloads_are_clear_errors_and_the_next_call_is_clean(sd1, baseline, named, field):
    with pytest.raises(RuntimeError) as err:
        txt2img(sd1, alwayson_scripts=guided(**named))
    assert f"Guided Synthesis: {field}:" in str(err.value)
    assert np.array_equal(as_array(txt2img(sd1).image), baseline)


def test_interrupt_mid_run_leaves_the_next_run_identical(sd1, baseline):
    outcome = {}

    def slow_run():
        try:
            outcome["result"] = txt2img(
                sd1,
                steps=30,
                alwayson_scripts=guided(strokes=STROKES, adam_steps=100, palette=BARN, strength=0.95),
            )
        except Exception as error:  # noqa: BLE001 - the test inspects whatever happened
            outcome["error"] = error

    thread = threading.Thread(target=slow_run)
    thread.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        progress = requests.get(f"{sd1.url}/sdapi/v1/progress", timeout=30).json()
        if progress["state"]["sampling_step"] >= 2:
            break
        time.sleep(0.2)
    sd1.api.interrupt()
    thread.join(timeout=600)
    assert not thread.is_alive()
    assert np.array_equal(as_array(txt2img(sd1).image), baseline)


def test_batches_and_seeds_are_reproducible(sd1):
    a = txt2img(sd1, batch_size=2, alwayson_scripts=guided(strokes=STROKES, adam_steps=3))
    b = txt2img(sd1, batch_size=2, alwayson_scripts=guided(strokes=STROKES, adam_steps=3))
    assert len(a.images) == 2
    assert all(np.array_equal(as_array(x), as_array(y)) for x, y in zip(a.images, b.images, strict=True))


def test_hires_fix_runs_guidance_on_the_first_pass(sd1):
    result = txt2img(
        sd1,
        enable_hr=True,
        hr_scale=1.5,
        hr_upscaler="Latent",
        denoising_strength=0.5,
        alwayson_scripts=guided(strokes=STROKES),
    )
    assert result.image.size == (int(SIZE * 1.5), int(SIZE * 1.5))
    assert "Guided stroke loss:" in result.info["infotexts"][0]


def test_aidi_edit_mode_reports_reconstruction_psnr(sd1):
    result = sd1.api.img2img(
        images=[painting()],
        prompt="a blue barn",
        seed=3,
        sampler_name="DDIM",
        steps=6,
        width=SIZE,
        height=SIZE,
        cfg_scale=5,
        denoising_strength=1.0,
        alwayson_scripts=guided(mode="edit", source_prompt="a red barn", return_reconstruction=True),
    )
    assert len(result.images) == 2  # the edit and the plain reconstruction
    info = result.info["infotexts"][0]
    assert "Guided reconstruction PSNR:" in info and "Guided inversion evals:" in info
    assert "Guided lr" not in info  # strokes-only fields stay out of an edit's infotext


def test_sdxl_checkpoint_strokes_and_regions(sdxl):
    plain = txt2img(sdxl)
    result = txt2img(sdxl, alwayson_scripts=guided(strokes=STROKES, palette=BARN, region_weight=2.0))
    assert stroke_mse(result.image) < stroke_mse(plain.image)
