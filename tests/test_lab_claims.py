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

# Measured on the shipped model (VAE + 5685 UNet steps) with the quick plan, 2 threads, 243 s
# (python -m lib_guided.lab report --quick --out docs/lab --threads 2; docs/lab/report.md).
MEASURED = {
    "gradop_plus_vs_sdedit": {"fd_ratio": 1.71, "gradop_plus_fd": 48.9, "sdedit_fd_matched": 28.6},
    "aidi_vs_ddim": {"ddim_psnr": 23.46, "aidi_a_psnr": 33.12, "vae_ceiling_psnr": 33.13},
    "region_control": {"without": 0.621, "with": 0.672},
    # GradOP+ through the default decoder against the full VAE (stroke MSE, FD), quick plan
    "linear_anchored": {"faithfulness_change": 0.069, "realism_change": -0.143},
    # AIDI-A early exit at 20 steps: tol 1e-2 is within 0.3 dB of 5 fixed iterations (33.06 vs 33.13 dB)
    "aidi_a_early_exit_20": {"tol": 1e-2, "model_evals_per_step": 2.92},
}

# GradOP+ must beat SDEdit's realism at the same stroke faithfulness: FD(GradOP+) / FD(SDEdit) at most
# this. The paper's claim; NOT met on this world by the shipped model (1.71), see the xfail below.
MAX_GRADOP_PLUS_FD_RATIO = 0.9
# 10-step AIDI-A reconstruction: at least this many dB above 10-step DDIM inversion (measured 9.7) ...
MIN_AIDI_GAIN_DB = 4.0
# ... and at most this many dB below the VAE round trip, the ceiling of any inversion (measured 0.0).
MAX_AIDI_GAP_TO_CEILING_DB = 1.0
# Region control raises the binding accuracy by at least this much (fraction of objects). The paper's
# claim; met by the shipped model with no margin to spare (0.621 -> 0.672: 3 of 58 objects), and NOT by
# earlier checkpoints (750 steps: 0.569 -> 0.379).
MIN_BINDING_GAIN = 0.05
# The default gradient decoder (linear-anchored) against the full VAE, as fractions: the stroke MSE may be
# at most this much higher (measured +6.9 %; the plain linear map: +136 %) ...
MAX_ANCHORED_FAITHFULNESS_LOSS = 0.15
# ... and the FD at most this much higher (measured -14.3 %: more realistic than the full path).
MAX_ANCHORED_REALISM_LOSS = 0.05
# AIDI-A's early exit at 20 steps: at most this many model evaluations per step at a tolerance within
# 0.3 dB of the 5-iteration result (measured 2.92 at tol 1e-2; at 10 steps only tol 1e-3 is within
# 0.3 dB, at 4.97 evaluations per step: the speed target's 3 is met at 20 steps only).
MAX_AIDI_A_EVALS_PER_STEP_20 = 3.0


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    from lib_guided.cli import load_model
    from lib_guided.lab.classifier import load_classifier
    from lib_guided.lab.report import run_report
    from lib_guided.lab.report_plan import QUICK
    from lib_guided.lab.shipped import shipped_model_folder

    folder = Path(os.environ["LAB_MODEL"]) if os.environ.get("LAB_MODEL") else shipped_model_folder()
    out = tmp_path_factory.mktemp("lab_report")
    run_report(load_model(str(folder)), load_classifier(), QUICK, out, model_folder=folder, plan_name="quick")
    return json.loads((out / "report.json").read_text())


def test_report_has_every_section(report):
    for key in ("vae_ceiling_psnr", "real_vs_real_fd", "strokes_vs_real_fd", "inversion", "synthesis",
                "binding", "editing", "inversion_early_exit"):
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
    reason="measured on the shipped model: GradOP+ FD 48.9 vs SDEdit 28.6 at matched faithfulness. SDEdit "
    "starts from flat strokes that are nearly the scene; GradOP+ starts from noise and inherits the small "
    "model's weak unguided sampling (text-only FD 61.4; docs/lab/report.md, README). "
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
def test_default_decoder_keeps_gradop_plus_quality_close_to_the_full_vae(report):
    rows = {r["decoder"]: r for r in claims(report)["decoders"]}
    anchored, linear = rows["linear-anchored"], rows["linear"]
    assert anchored["faithfulness_change"] <= MAX_ANCHORED_FAITHFULNESS_LOSS, anchored
    assert anchored["realism_change"] <= MAX_ANCHORED_REALISM_LOSS, anchored
    # the anchor is what makes the linear map usable on this (far from linear) VAE
    assert anchored["faithfulness_mse"] < 0.7 * linear["faithfulness_mse"], rows


@pytest.mark.slow
def test_aidi_a_early_exit_needs_at_most_three_evaluations_per_step_at_20_steps(report):
    at = {e["steps"]: e for e in claims(report)["early_exit"]}
    assert at[20]["loosest_tol_within"] is not None, at
    assert at[20]["model_evals_per_step"] <= MAX_AIDI_A_EVALS_PER_STEP_20, at
    assert at[10]["reference"] == "5 iterations" and at[10]["loosest_tol_within"] is not None, at


@pytest.mark.slow
def test_region_control_raises_binding_accuracy(report):
    claim = claims(report)["region_control"]
    assert claim["gain"] >= MIN_BINDING_GAIN, claim
