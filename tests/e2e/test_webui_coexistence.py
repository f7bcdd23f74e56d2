"""The extension beside two widely used ones in one WebUI: Dynamic Thresholding and Regional Prompter.

Their public sources are copied into the session's own data dir (conftest ``sd1_with_others``), never
into this repository. Each is enabled together with ours: the job runs, each extension's infotext is
written, each still changes the image, and ours still pulls it toward the strokes. Where ours cannot
work with the other one (region control under Regional Prompter's attention mode) it says so clearly.

Their API args are positional, in the order of their ``ui()`` return lists (read from their sources;
see tests/e2e/README.md, "Coexistence").
"""

from __future__ import annotations

import numpy as np
import pytest
import requests
from payloads import SIZE, as_array, b64, guided, painting, stroke_mse

STROKES = b64(painting())
# our stroke guidance, full decoder (payloads.guided); 6 Adam steps instead of 12 halve the cost on a busy CPU
# and still pull clearly toward the painting
OURS = {"strokes": STROKES, "adam_steps": 6}
BARN = [{"color": "#d03030", "phrase": "red barn", "weight": 1.0}]
# two Regional Prompter regions, left and right ("Columns" with ratios 1,1), as its README writes them
TWO_REGIONS = "a red barn BREAK a blue lake"

DT_TITLE = "dynamic thresholding (cfg scale fix)"
RP_TITLE = "regional prompter"


def dynamic_thresholding(mimic_scale: float = 5.0) -> dict:
    # enabled, mimic scale, threshold percentile, mimic mode, mimic scale minimum, CFG mode, CFG scale
    # minimum, scheduler value, separate feature channels, scaling startpoint, variability measure,
    # interpolate phi (scripts/dynamic_thresholding.py, Script.ui's return list); its UI defaults but the
    # first two
    args = [True, mimic_scale, 100.0, "Constant", 0.0, "Constant", 0.0, 4.0, True, "MEAN", "AD", 1.0]
    return {DT_TITLE: {"args": args}}


def regional_prompter(calc: str) -> dict:
    # active, debug, mode tab, Matrix submode, Mask submode, Prompt submode, divide ratio, base ratio, use
    # base, use common, use negative common, calc mode, options, LoRA negative text encoder, LoRA negative
    # U-Net, threshold, mask, LoRA stop step, LoRA hires stop step, flip (scripts/rp.py, Script.ui's
    # return list)
    args = [
        True,
        False,
        "Matrix",
        "Columns",
        "Mask",
        "Prompt",
        "1,1",
        "0.2",
        False,
        False,
        False,
        calc,
        [],
        "0",
        "0",
        "0.4",
        None,
        "0",
        "0",
        False,
    ]
    return {RP_TITLE: {"args": args}}


def txt2img(server, prompt="a red barn", cfg_scale=5.0, **kw):
    """One 128x128, 6-step Euler job, seed 1; webuiapi raises RuntimeError(status, text) unless HTTP 200."""
    return server.api.txt2img(
        prompt=prompt,
        seed=1,
        sampler_name="Euler",
        width=SIZE,
        height=SIZE,
        steps=6,
        cfg_scale=cfg_scale,
        **kw,
    )


def differ(a, b) -> float:
    """Mean absolute difference in grey levels (0..255)."""
    return float(np.abs(as_array(a.image) - as_array(b.image)).mean() * 255)


@pytest.fixture(scope="module")
def plain_first(sd1_with_others):
    """Plain txt2img on the three-extension server before any of these tests enabled anything."""
    return as_array(txt2img(sd1_with_others).image)


@pytest.fixture(scope="module")
def plain_two_regions(sd1_with_others):
    """Plain txt2img on the two-region prompt (without Regional Prompter, BREAK only starts a new chunk)."""
    return txt2img(sd1_with_others, prompt=TWO_REGIONS)


@pytest.fixture(scope="module")
def ours_two_regions(sd1_with_others):
    """Our stroke guidance alone, on the two-region prompt."""
    return txt2img(sd1_with_others, prompt=TWO_REGIONS, alwayson_scripts=guided(**OURS))


def test_all_three_extensions_load(sd1_with_others, plain_first):
    scripts = requests.get(f"{sd1_with_others.url}/sdapi/v1/scripts", timeout=60).json()
    for title in ("guided synthesis", DT_TITLE, RP_TITLE):
        assert title in scripts["txt2img"] and title in scripts["img2img"], scripts
    log = sd1_with_others.webui.log().split("Model loaded")[0]  # the start, before any job
    assert "Error loading script" not in log and "Traceback" not in log, log[-4000:]
    assert "UniPC sampler support failed to load" not in log  # Dynamic Thresholding's optional part


def test_dynamic_thresholding_with_strokes(sd1_with_others):
    # a high CFG, whose range DT's mimic scale 5 tames; on random weights cond and uncond differ little, so
    # DT's effect is small (about 0.7 grey levels at CFG 30, 0.2 at CFG 12) but exact and repeatable
    server, cfg = sd1_with_others, 30.0
    plain = txt2img(server, cfg_scale=cfg)
    dt = txt2img(server, cfg_scale=cfg, alwayson_scripts=dynamic_thresholding())
    ours = txt2img(server, cfg_scale=cfg, alwayson_scripts=guided(**OURS))
    both = txt2img(server, cfg_scale=cfg, alwayson_scripts={**guided(**OURS), **dynamic_thresholding()})
    info = both.info["infotexts"][0]
    assert "Guided stroke loss:" in info and "Guided mode: strokes" in info, info
    assert "Dynamic thresholding enabled: True" in info and "Mimic scale: 5.0" in info, info
    assert "Sampler: Euler," in info, info  # DT's renamed sampler is reported under its own name
    print(
        f"DT alone vs plain {differ(dt, plain):.2f}, ours+DT vs ours {differ(both, ours):.2f} grey levels; "
        f"stroke MSE plain {stroke_mse(plain.image):.4f} DT {stroke_mse(dt.image):.4f} "
        f"ours {stroke_mse(ours.image):.4f} ours+DT {stroke_mse(both.image):.4f}"
    )
    assert differ(dt, plain) > 0.25  # DT acts at this CFG on its own ...
    assert differ(both, ours) > 0.5 * differ(dt, plain)  # ... and about as much beside ours
    assert stroke_mse(both.image) < stroke_mse(dt.image)  # ours still pulls toward the strokes under DT


@pytest.mark.parametrize("calc", ["Attention", "Latent"])
def test_regional_prompter_with_strokes(sd1_with_others, plain_two_regions, ours_two_regions, calc):
    # strokes only: no phrases bound, so none of our region control (which RP's attention mode would bypass)
    server, plain = sd1_with_others, plain_two_regions
    rp = txt2img(server, prompt=TWO_REGIONS, alwayson_scripts=regional_prompter(calc))
    both = txt2img(server, prompt=TWO_REGIONS, alwayson_scripts={**guided(**OURS), **regional_prompter(calc)})
    info = both.info["infotexts"][0]
    assert "Guided stroke loss:" in info, info
    assert "RP Active: True" in info and "RP Divide mode: Matrix" in info, info
    assert f"RP Calc Mode: {calc}" in info, info
    runs = {"plain": plain, "RP": rp, "ours": ours_two_regions, "ours+RP": both}
    mse = {name: round(stroke_mse(r.image), 4) for name, r in runs.items()}
    print(
        f"{calc}: RP alone vs plain {differ(rp, plain):.2f}, ours+RP vs ours "
        f"{differ(both, ours_two_regions):.2f} grey levels; stroke MSE {mse}"
    )
    assert differ(rp, plain) > 0.25  # RP splits the prompt into regions on its own ...
    assert differ(both, ours_two_regions) > 0.5 * differ(rp, plain)  # ... and about as much beside ours
    assert stroke_mse(both.image) < stroke_mse(rp.image)


def test_region_control_under_rp_attention_mode_is_refused(sd1_with_others, ours_two_regions):
    server = sd1_with_others
    payload = {**guided(**OURS, palette=BARN, region_weight=1.0), **regional_prompter("Attention")}
    with pytest.raises(RuntimeError) as err:
        txt2img(server, prompt=TWO_REGIONS, alwayson_scripts=payload)
    status, text = err.value.args
    assert status == 500, text
    refusal = (
        "Guided Synthesis: region control cannot run while another extension replaces the cross-attention"
    )
    assert refusal in text, text
    # the next job (RP off, so RP removes its attention hooks) is exactly ours alone again
    again = txt2img(server, prompt=TWO_REGIONS, alwayson_scripts=guided(**OURS))
    assert np.array_equal(as_array(again.image), as_array(ours_two_regions.image))


def test_region_control_under_rp_latent_mode_is_refused_like_and(sd1_with_others):
    # RP's Latent mode turns each BREAK into AND (one context per region) in its process(), after ours ran;
    # region control refuses AND sub-prompts, so it checks again on the prompt the sampler call encodes
    payload = {**guided(**OURS, palette=BARN, region_weight=1.0), **regional_prompter("Latent")}
    with pytest.raises(RuntimeError) as err:
        txt2img(sd1_with_others, prompt=TWO_REGIONS, alwayson_scripts=payload)
    status, text = err.value.args
    assert status == 500, text
    assert "Guided Synthesis:" in text and "AND sub-prompts" in text, text


def test_plain_txt2img_is_unchanged_when_ours_is_disabled(sd1_with_others, plain_first):
    server = sd1_with_others
    off = {"guided synthesis": {"args": [{"enabled": False, "strokes": STROKES, "palette": BARN}]}}
    disabled = txt2img(server, alwayson_scripts=off)
    again = txt2img(server)
    # after every other test's jobs (theirs and ours enabled, a refused one), the same server's plain
    # output is still the one it gave first, with our extension given args but disabled, and without
    assert np.array_equal(as_array(disabled.image), plain_first)
    assert np.array_equal(as_array(again.image), plain_first)
    assert "Guided" not in disabled.info["infotexts"][0]
