"""The papers' claims, measured on the shipped lab model with the quick report plan (fixed seeds).

Runs ``python -m lib_guided.lab report --quick`` in-process once (a few minutes on one CPU thread) and
asserts on its numbers. The model is ``lib_guided/lab/model`` (``LAB_MODEL=DIR`` points elsewhere, e.g.
at a training checkpoint); a missing model is an error, never a skip: these claims are what the lab is
for. The thresholds below were set from measured numbers with a margin (see MEASURED); recalibrate them
from ``report.json`` -> ``claims`` when the shipped model changes.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from lib_guided.lab.report_claims import claims
from lib_guided.stroke_job import StrokeSettings

# Measured on the shipped model (VAE + 25185 UNet steps: 5685, 14000 with min-SNR weighting on a cosine
# schedule, then 5500 on a second cosine) with GradOP+'s normalised step, on the quick plan (python -m
# lib_guided.lab report --quick --out docs/lab --threads 2; docs/lab/report.md): 896 s. The 19685-step
# model with the paper's Adam step before it in brackets.
MEASURED = {
    "gradop_plus_vs_sdedit": {"fd_ratio": 1.12, "gradop_plus_fd": 24.3, "sdedit_fd_matched": 21.6},  # [1.51]
    "aidi_vs_ddim": {"ddim_psnr": 28.47, "aidi_a_psnr": 33.11, "vae_ceiling_psnr": 33.13},  # [28.43, 33.12]
    # binding without / with region control in the default prompts mode, the phrases with the caption's
    # article ("a red circle"; colour 0.879 -> 0.931) [0.862 -> 0.966 with bare phrases, colour 0.845]
    "region_control": {"without": 0.862, "with": 0.983},
    # GradOP+ through the default decoder against the full VAE (stroke MSE, FD) [+12.5 %, -5.4 %]
    "linear_anchored_half": {"faithfulness_change": 0.013, "realism_change": -0.105},
    # linear-local [+1.2 %, -15.1 %]; the plain linear map against the anchored one: stroke MSE 0.63x, FD
    # 0.71x [0.57x, 0.50x]: the normalised step makes even the plain map far less harmful
    "linear_local": {"faithfulness_change": 0.009, "realism_change": -0.066},
    # AIDI-A early exit within 0.3 dB of 5 fixed iterations: evaluations per step at 10 steps (tol 3e-3) and
    # 20 (tol 1e-2) [1.95 at tol 1e-2, 1.05 at 3e-2]
    "aidi_a_early_exit": {10: 2.80, 20: 1.16},
    # AIDI-A editing at 10 steps with the default attention injection 0.6 (12 scenes): the automatic mask
    # keeps 30.85 dB outside the object, the object's own mask 31.47, no mask 25.86; edit success 1.0
    # (object mask 1.0); without injection the automatic mask gives 24.88 dB and 0.75 [gap 0.32 dB, 5.65]
    "auto_mask": {"gap_to_object_db": 0.61, "auto_edit_success": 1.0, "no_injection_gain_db": 5.97},
    # text-only FD against the VAE round trip's 11.27 (ratio 1.48) [0.844, 19.1, 89.5]
    "model_quality": {"caption_accuracy": 0.9375, "text_only_fd": 16.7, "text_only_texture_fd": 77.3},
}

# GradOP+ must beat SDEdit's realism at the same stroke faithfulness: FD(GradOP+) / FD(SDEdit) at most
# this. The paper's claim; NOT met on this world by the shipped model (1.12), see the xfail below.
MAX_GRADOP_PLUS_FD_RATIO = 0.9
# 10-step AIDI-A reconstruction: at least this many dB above 10-step DDIM inversion (measured 4.69) ...
MIN_AIDI_GAIN_DB = 4.0
# ... and at most this many dB below the VAE round trip, the ceiling of any inversion (measured 0.01).
MAX_AIDI_GAP_TO_CEILING_DB = 1.0
# Region control raises the binding accuracy by at least this much (fraction of objects) and to at least
# this (issue 15's target). The paint-with-words bias lost on the later models (0.810 -> 0.776 on the
# shipped one); regional prompting, the default mode, wins (0.862 -> 0.983; full plan 0.849 -> 0.927).
MIN_BINDING_GAIN = 0.05
MIN_BINDING_WITH_CONTROL = 0.9
# The default gradient decoder (linear-anchored-half) against the full VAE, as fractions: the stroke MSE
# may be at most this much higher (issue 11's target; measured +1.3 % with the normalised step, +12.5 %
# with Adam on the 19685-step model) ...
MAX_ANCHORED_FAITHFULNESS_LOSS = 0.05
# linear-local, the map refitted around the first phase's latent: stroke MSE at most this much higher
# than the full VAE's (issue 11's target; measured +0.9 %).
MAX_LOCAL_FAITHFULNESS_LOSS = 0.05
# ... and the FD of either decoder at most this much higher (measured -10.5 % and -6.6 %, i.e. more
# realistic than the full VAE's).
MAX_ANCHORED_REALISM_LOSS = 0.05
# AIDI-A's early exit: at most this many model evaluations per step at a tolerance within 0.3 dB of the
# 5-iteration result, per step count (issue 13's targets; measured 2.80 and 1.16).
MAX_AIDI_A_EVALS_PER_STEP = {10: 3.0, 20: 2.0}
# The automatic edit mask (at the default attention injection): background PSNR at most this far below
# the object's own mask (measured 0.61 dB; issue 13's target 1 dB), edit success at least this (measured
# 1.0), and attention injection worth at least this much background PSNR (measured 5.97).
MAX_AUTO_MASK_GAP_DB = 1.0
MIN_AUTO_MASK_EDIT_SUCCESS = 0.9
MIN_INJECTION_GAIN_DB = 3.0
# The base model: text-only samples right by the classifier at least this often (issue 15's target 0.9;
# measured 0.9375 of 32 samples, one sample is 0.031), and their FD at most this multiple of the VAE round
# trip's (measured 1.48; the target 2).
MIN_CAPTION_ACCURACY = 0.875
MAX_TEXT_ONLY_FD_OVER_VAE = 2.0


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    from lib_guided.adapters.diffusers_model import load_model, shipped_model_folder
    from lib_guided.lab.classifier import load_classifier
    from lib_guided.lab.report import run_report
    from lib_guided.lab.report_plan import QUICK

    folder = Path(os.environ["LAB_MODEL"]) if os.environ.get("LAB_MODEL") else shipped_model_folder()
    out = tmp_path_factory.mktemp("lab_report")
    run_report(load_model(str(folder)), load_classifier(), QUICK, out, model_folder=folder, plan_name="quick")
    return json.loads((out / "report.json").read_text())


def test_report_has_every_section(report):
    for key in (
        "vae_ceiling_psnr",
        "real_vs_real_fd",
        "strokes_vs_real_fd",
        "inversion",
        "synthesis",
        "binding",
        "editing",
        "inversion_early_exit",
    ):
        assert key in report
    assert {"without_control", "with_control"} <= set(report["binding"])
    assert {"solver", "steps", "psnr", "model_evals"} <= set(report["inversion"][0])
    assert {"method", "setting", "faithfulness_mse", "realism_fd"} <= set(report["synthesis"][0])
    assert {"solver", "steps", "edit_success", "background_psnr"} <= set(report["editing"][0])
    assert report["claims"] == json.loads(json.dumps(claims(report)))


def test_realism_metric_separates_real_from_strokes(report):
    assert report["strokes_vs_real_fd"] > 3 * report["real_vs_real_fd"]


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="measured on the shipped model: GradOP+ FD 24.3 vs SDEdit 21.6 at matched faithfulness (ratio "
    "1.12 with the normalised step; the paper's Adam step 1.51 on the 19685-step model). SDEdit starts from "
    "flat strokes that are nearly the scene; two sets of real scenes are FD 11.7 apart at these 32 images "
    "(docs/lab/report.md, README). Full plan: 1.27 (default decoder 1.12), real vs real 0.45x SDEdit's FD. "
    "strict: the day it holds, this xfail fails and must be removed",
)
def test_gradop_plus_is_more_realistic_than_sdedit_at_matched_faithfulness(report):
    claim = claims(report)["gradop_plus_vs_sdedit"]
    assert claim["fd_ratio"] <= MAX_GRADOP_PLUS_FD_RATIO, claim


@pytest.mark.slow
def test_aidi_a_reconstructs_far_better_than_ddim_inversion_and_near_the_vae_ceiling(report):
    claim = claims(report)["aidi_vs_ddim"]
    assert claim["steps"] == 10
    assert claim["gain_db"] >= MIN_AIDI_GAIN_DB, claim
    assert claim["gap_to_ceiling_db"] <= MAX_AIDI_GAP_TO_CEILING_DB, claim
    assert math.isfinite(claim["aidi_a_model_evals"])
    assert claim["aidi_a_model_evals"] > claim["ddim_model_evals"]


@pytest.mark.slow
def test_the_anchor_makes_the_linear_decoder_usable(report):
    rows = {r["decoder"]: r for r in claims(report)["decoders"]}
    anchored, linear = rows["linear-anchored"], rows["linear"]
    # the anchor is what makes the linear map usable on this (far from linear) VAE; with the normalised
    # step the plain map harms less, so the FD bound is looser than the stroke MSE's (MEASURED)
    assert anchored["faithfulness_mse"] < 0.7 * linear["faithfulness_mse"], rows
    assert anchored["realism_fd"] < 0.8 * linear["realism_fd"], rows


@pytest.mark.slow
def test_default_decoder_keeps_gradop_plus_quality_close_to_the_full_vae(report):
    anchored = {r["decoder"]: r for r in claims(report)["decoders"]}[StrokeSettings().decoder]
    assert anchored["faithfulness_change"] <= MAX_ANCHORED_FAITHFULNESS_LOSS, anchored
    assert anchored["realism_change"] <= MAX_ANCHORED_REALISM_LOSS, anchored


@pytest.mark.slow
def test_the_local_refit_keeps_gradop_plus_within_five_percent_of_the_full_vae(report):
    # issue 11's faithfulness target, met by linear-local (one probe, in the first phase; not the
    # default: it costs four full forward passes per image, README)
    local = {r["decoder"]: r for r in claims(report)["decoders"]}["linear-local"]
    assert local["faithfulness_change"] <= MAX_LOCAL_FAITHFULNESS_LOSS, local
    assert local["realism_change"] <= MAX_ANCHORED_REALISM_LOSS, local


@pytest.mark.slow
def test_aidi_a_early_exit_needs_at_most_three_evaluations_per_step_at_10_steps_and_two_at_20(report):
    at = {e["steps"]: e for e in claims(report)["early_exit"]}
    for steps, most in MAX_AIDI_A_EVALS_PER_STEP.items():
        assert at[steps]["reference"] == "5 iterations" and at[steps]["loosest_tol_within"] is not None, at
        assert at[steps]["model_evals_per_step"] <= most, at


@pytest.mark.slow
def test_the_automatic_edit_mask_keeps_the_background_nearly_like_the_object_mask(report):
    claim = claims(report)["auto_mask"]
    assert claim["gap_to_object_db"] <= MAX_AUTO_MASK_GAP_DB, claim
    assert claim["auto_edit_success"] >= MIN_AUTO_MASK_EDIT_SUCCESS, claim
    gain = claim["auto_background_psnr"] - claim["no_injection_background_psnr"]
    assert gain >= MIN_INJECTION_GAIN_DB, claim


@pytest.mark.slow
def test_region_control_raises_binding_accuracy(report):
    claim = claims(report)["region_control"]
    assert report["binding"]["region_mode"] == "prompts"
    assert claim["gain"] >= MIN_BINDING_GAIN, claim
    assert claim["with"] >= MIN_BINDING_WITH_CONTROL, claim
    # and it binds the colour too, not only the shape (measured 0.879 -> 0.931; with bare phrases the
    # region's own prompt drifted and the colour fell, 0.879 -> 0.845)
    binding = report["binding"]
    assert binding["colour_with_control"] >= binding["colour_without_control"], binding


@pytest.mark.slow
def test_the_shipped_model_draws_most_of_its_captions(report):
    quality = report["model_quality"]
    assert quality["real_caption_accuracy"] >= 0.95  # the judge itself: real scenes meet their captions
    assert quality["caption_accuracy"] >= MIN_CAPTION_ACCURACY, quality
    ratio = quality["text_only_fd"]["realism_fd"] / report["vae_vs_real_fd"]
    assert ratio <= MAX_TEXT_ONLY_FD_OVER_VAE, (ratio, quality)
    assert quality["unet_steps"] >= 25185
