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


def edit_img2img(server, prompt="a blue barn", steps=6, **kw):
    """img2img on the two-colour painting, fully inverted (denoising 1), DDIM, seed 3."""
    return server.api.img2img(
        images=[painting()],
        prompt=prompt,
        seed=3,
        sampler_name="DDIM",
        steps=steps,
        width=SIZE,
        height=SIZE,
        cfg_scale=5,
        denoising_strength=1.0,
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


def test_default_decoder_runs_and_is_written_to_the_infotext(sd1, baseline):
    named = {"enabled": True, "strokes": STROKES}  # no decoder given: the default
    result = txt2img(sd1, alwayson_scripts={"guided synthesis": {"args": [named]}})
    info = result.info["infotexts"][0]
    decoder = GuidedParams().decoder
    assert f"Guided decoder: {decoder}," in info + "," and "Guided stroke loss:" in info
    assert not np.array_equal(as_array(result.image), baseline)


def test_zero_strength_and_zero_region_weight_equal_the_disabled_output(sd1, baseline):
    off = txt2img(sd1, alwayson_scripts=guided(strokes=STROKES, strength=0.0))
    assert np.array_equal(as_array(off.image), baseline)
    # the phrase is already in the prompt, so only region control could change the image
    zero = txt2img(
        sd1, alwayson_scripts=guided(strokes=STROKES, strength=0.0, palette=BARN, region_weight=0.0)
    )
    assert np.array_equal(as_array(zero.image), baseline)
    bound = {
        mode: as_array(
            txt2img(
                sd1,
                alwayson_scripts=guided(
                    strokes=STROKES, strength=0.0, palette=BARN, region_weight=3.0, region_mode=mode
                ),
            ).image
        )
        for mode in ("prompts", "bias", "masked")
    }
    for image in bound.values():  # each mode's own attention path acts through the WebUI's sampler
        assert not np.array_equal(image, baseline)
    assert not np.array_equal(bound["prompts"], bound["bias"])


def test_named_dict_and_positional_args_agree(sd1):
    named = txt2img(sd1, alwayson_scripts=guided(strokes=STROKES, palette=BARN, adam_steps=4))
    values = {f.name: f.default for f in FIELDS}
    values.update(
        enabled=True, strokes=STROKES, palette=[["#d03030", "red barn", 1.0]], adam_steps=4, decoder="full"
    )
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
    assert restored == GuidedParams(enabled=True, palette=BARN, lr=0.05, region_weight=1.5, decoder="full")


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
    result = edit_img2img(
        sd1, alwayson_scripts=guided(mode="edit", source_prompt="a red barn", return_reconstruction=True)
    )
    assert len(result.images) == 2  # the edit and the plain reconstruction
    info = result.info["infotexts"][0]
    assert "Guided reconstruction PSNR:" in info and "Guided inversion evals:" in info
    assert "Guided lr" not in info  # strokes-only fields stay out of an edit's infotext


def test_sdxl_checkpoint_strokes_and_regions(sdxl):
    plain = txt2img(sdxl)
    result = txt2img(sdxl, alwayson_scripts=guided(strokes=STROKES, palette=BARN, region_weight=2.0))
    assert stroke_mse(result.image) < stroke_mse(plain.image)


@pytest.mark.parametrize("sampler", ["Euler", "DDIM"])
def test_sd2_v_prediction_checkpoint_strokes(sd2v, sampler):
    # k-diffusion (CompVisVDenoiser) and timestep samplers (CompVisTimestepsVDenoiser) both predict v
    plain = txt2img(sd2v, sampler=sampler)
    result = txt2img(sd2v, sampler=sampler, alwayson_scripts=guided(strokes=STROKES, palette=BARN))
    assert stroke_mse(result.image) < stroke_mse(plain.image)
    off = txt2img(sd2v, sampler=sampler, alwayson_scripts=guided(strokes=STROKES, strength=0.0))
    assert np.array_equal(as_array(off.image), as_array(plain.image))


def test_sd2_v_prediction_aidi_reconstruction(sd2v):
    result = edit_img2img(
        sd2v,
        prompt="a red barn",
        alwayson_scripts=guided(mode="edit", source_prompt="a red barn", return_reconstruction=True),
    )
    info = result.info["infotexts"][0]
    psnr = float(info.split("Guided reconstruction PSNR: ")[1].split(",")[0].split()[0])
    assert psnr > 20, info  # the inversion runs through the v-prediction wrapper and round-trips


def xyz_args(x_type: int, x_values: str) -> list:
    """The X/Y/Z plot script's positional args: one X axis, lone images returned after the grid."""
    nothing = [0, "", []]
    return [x_type, x_values, [], *nothing, *nothing, True, True, False, False, False, False, False, 0, False]


def xyz_labels(server, img2img: bool) -> list[str]:
    scripts = requests.get(f"{server.url}/sdapi/v1/script-info", timeout=60).json()
    plot = next(s for s in scripts if s["name"] == "x/y/z plot" and s["is_img2img"] == img2img)
    return plot["args"][0]["choices"]  # "X type", a dropdown of axis labels (sent as an index)


def test_xyz_plot_axes_exist_per_tab(sd1):
    txt, img = xyz_labels(sd1, img2img=False), xyz_labels(sd1, img2img=True)
    for label in ("[Guided] Adam steps N", "[Guided] Learning rate", "[Guided] Region control weight"):
        assert label in txt and label in img
    for label in ("[Guided] Inversion CFG", "[Guided] Edit CFG", "[Guided] Inversion solver"):
        assert label in img and label not in txt
    assert len(txt) == len(set(txt))  # registered once


def test_xyz_plot_varies_adam_steps(sd1, baseline):
    x_type = xyz_labels(sd1, img2img=False).index("[Guided] Adam steps N")
    result = txt2img(
        sd1,
        script_name="x/y/z plot",
        script_args=xyz_args(x_type, "0, 6"),
        alwayson_scripts=guided(strokes=STROKES),
    )
    grid, no_steps, six_steps = result.images
    assert grid.size[0] >= 2 * SIZE
    assert np.array_equal(as_array(no_steps), baseline)  # N = 0: no gradient step at all
    assert stroke_mse(six_steps) < stroke_mse(no_steps)
    infos = result.info["infotexts"]
    assert "Guided N: 0" in infos[1] and "Guided N: 6" in infos[2]


def test_xyz_plot_rejects_an_out_of_range_value_before_generating(sd1, baseline):
    x_type = xyz_labels(sd1, img2img=False).index("[Guided] Learning rate")
    with pytest.raises(RuntimeError) as err:
        txt2img(
            sd1,
            script_name="x/y/z plot",
            script_args=xyz_args(x_type, "0.1, 7"),
            alwayson_scripts=guided(strokes=STROKES),
        )
    assert "lr: X/Y/Z plot value: must be in [0.001, 1], got 7" in str(err.value)
    assert np.array_equal(as_array(txt2img(sd1).image), baseline)


def test_xyz_plot_edit_cfg_axis_in_img2img(sd1):
    x_type = xyz_labels(sd1, img2img=True).index("[Guided] Edit CFG")
    result = edit_img2img(
        sd1,
        steps=4,
        script_name="x/y/z plot",
        script_args=xyz_args(x_type, "1, 9"),
        alwayson_scripts=guided(mode="edit", source_prompt="a red barn"),
    )
    _, low, high = result.images
    assert not np.array_equal(as_array(low), as_array(high))
    infos = result.info["infotexts"]
    assert "Guided edit CFG: 1.0" in infos[1] and "Guided edit CFG: 9.0" in infos[2]
