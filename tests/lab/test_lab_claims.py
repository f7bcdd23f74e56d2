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

# Measured on the shipped model (VAE + 8685 UNet steps: 5685, then 3000 with min-SNR weighting) with the
# quick plan (python -m lib_guided.lab report --quick --out docs/lab; docs/lab/report.md): 1419 s on one
# thread of a busy machine with attention injection and four early-exit tolerances (804 s before, 2 threads).
MEASURED = {
    "gradop_plus_vs_sdedit": {"fd_ratio": 1.36, "gradop_plus_fd": 35.6, "sdedit_fd_matched": 26.3},
    # DDIM inversion is the standard one since the first-guess fix (23.46 dB before)
    "aidi_vs_ddim": {"ddim_psnr": 28.29, "aidi_a_psnr": 33.11, "vae_ceiling_psnr": 33.13},
    "region_control": {"without": 0.897, "with": 0.828},
    # GradOP+ through the default decoder against the full VAE (stroke MSE, FD), quick plan
    "linear_anchored": {"faithfulness_change": 0.211, "realism_change": 0.203},
    # AIDI-A early exit: tol 1e-3 is within 0.3 dB of 5 fixed iterations (33.12 vs 33.13 dB) at
    # 3.73 evaluations per step at 10 steps and 2.43 at 20 (4.97 and 2.92 before the extrapolated guess)
    "aidi_a_early_exit_20": {"tol": 1e-3, "model_evals_per_step": 2.43},
    # since a converged solve returns F(y) (quick plan, 6 scenes): within 0.3 dB of 5 iterations at
    # 1.97 evaluations per step at 10 steps (tol 1e-2) and 1.05 at 20 (tol 3e-2)
    "aidi_a_early_exit": {10: 1.97, 20: 1.05},
    # AIDI-A editing at 10 steps with the default attention injection 0.6 (12 scenes): the automatic mask
    # keeps 29.33 dB outside the object, the object's own mask 30.44, no mask 23.87; edit success 0.917
    # (object mask 1.0); without injection the automatic mask gives 25.45 dB and 0.667
    "auto_mask": {"gap_to_object_db": 1.10, "auto_edit_success": 0.917, "no_injection_gain_db": 3.88},
    "model_quality": {"caption_accuracy": 0.656, "text_only_fd": 31.3, "text_only_texture_fd": 110.8},
}

# GradOP+ must beat SDEdit's realism at the same stroke faithfulness: FD(GradOP+) / FD(SDEdit) at most
# this. The paper's claim; NOT met on this world by the shipped model (1.71), see the xfail below.
MAX_GRADOP_PLUS_FD_RATIO = 0.9
# 10-step AIDI-A reconstruction: at least this many dB above 10-step DDIM inversion (measured 9.7) ...
MIN_AIDI_GAIN_DB = 4.0
# ... and at most this many dB below the VAE round trip, the ceiling of any inversion (measured 0.0).
MAX_AIDI_GAP_TO_CEILING_DB = 1.0
# Region control raises the binding accuracy by at least this much (fraction of objects). The paper's
# claim; met by the 5685-step model with no margin (0.621 -> 0.672), NOT by the shipped 8685-step one,
# which binds by itself and loses with the bias (0.897 -> 0.828): see the xfail below.
MIN_BINDING_GAIN = 0.05
# The default gradient decoder (linear-anchored-half; before it linear-anchored) against the full VAE, as
# fractions: the stroke MSE may be at most this much higher (linear-anchored: +6.9 % on the 5685-step
# model, +21.1 % on the shipped one; linear-anchored-half +23.8 %) ...
MAX_ANCHORED_FAITHFULNESS_LOSS = 0.15
# ... and the FD at most this much higher (measured -14.3 % before, +20.3 % on the shipped model).
MAX_ANCHORED_REALISM_LOSS = 0.05
# AIDI-A's early exit: at most this many model evaluations per step at a tolerance within 0.3 dB of the
# 5-iteration result, per step count (issue 13's targets; measured 1.97 and 1.05).
MAX_AIDI_A_EVALS_PER_STEP = {10: 3.0, 20: 2.0}
# The automatic edit mask (at the default attention injection): background PSNR at most this far below
# the object's own mask (measured 1.10 dB; the full plan's 24 scenes: 1.04 at 10 steps, 0.97 at 20),
# edit success at least this (measured 0.917), and attention injection worth at least this much
# background PSNR (measured 3.88).
MAX_AUTO_MASK_GAP_DB = 1.6
MIN_AUTO_MASK_EDIT_SUCCESS = 0.8
MIN_INJECTION_GAIN_DB = 2.0


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
    reason="measured on the shipped model: GradOP+ FD 35.6 vs SDEdit 26.3 at matched faithfulness (ratio "
    "1.36; 1.71 on the 5685-step model). SDEdit starts from flat strokes that are nearly the scene; GradOP+ "
    "starts from noise and inherits the small model's unguided sampling (text-only FD 31.3, caption "
    "accuracy 0.66; docs/lab/report.md, README). "
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
    # the anchor is what makes the linear map usable on this (far from linear) VAE
    assert anchored["faithfulness_mse"] < 0.7 * linear["faithfulness_mse"], rows
    assert anchored["realism_fd"] < 0.7 * linear["realism_fd"], rows


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="measured on the shipped model: the default linear-anchored-half vs the full VAE, stroke MSE "
    "+23.8 % and FD -2.8 % (linear-anchored: +21.1 %, +20.3 %; every-step anchoring changes nothing, so the "
    "loss is the linear map's gradient, not its image). strict: the day it holds, this xfail fails and must "
    "be removed",
)
def test_default_decoder_keeps_gradop_plus_quality_close_to_the_full_vae(report):
    anchored = {r["decoder"]: r for r in claims(report)["decoders"]}[StrokeSettings().decoder]
    assert anchored["faithfulness_change"] <= MAX_ANCHORED_FAITHFULNESS_LOSS, anchored
    assert anchored["realism_change"] <= MAX_ANCHORED_REALISM_LOSS, anchored


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
@pytest.mark.xfail(
    strict=True,
    reason="measured on the shipped model: binding 0.897 without region control, 0.828 with it (the "
    "paint-with-words bias now hurts a model that binds by itself; 0.621 -> 0.672 on the 5685-step model). "
    "strict: the day it holds again, this xfail fails and must be removed",
)
def test_region_control_raises_binding_accuracy(report):
    claim = claims(report)["region_control"]
    assert claim["gain"] >= MIN_BINDING_GAIN, claim


@pytest.mark.slow
def test_the_shipped_model_draws_most_of_its_captions(report):
    quality = report["model_quality"]
    assert quality["real_caption_accuracy"] >= 0.95  # the judge itself: real scenes meet their captions
    # measured 0.656 (0.281 for the 5685-step model); the lab's target is 0.9
    assert quality["caption_accuracy"] >= 0.5, quality
    assert quality["unet_steps"] >= 8685
