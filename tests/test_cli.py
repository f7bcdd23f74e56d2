"""``python -m lib_guided`` end to end on the tiny model saved as a diffusers folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.tiny_models import save_tiny_pipeline

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> subprocess.CompletedProcess:
    # one thread, like the in-process tests: tiny ops oversubscribed on 2 shared cores crawl
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "lib_guided", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_generate_and_edit_from_the_command_line(tmp_path):
    model = save_tiny_pipeline(tmp_path / "model")
    strokes = np.zeros((64, 64, 3), np.uint8)
    strokes[:32] = (135, 180, 230)
    strokes[32:] = (70, 140, 60)
    Image.fromarray(strokes).save(tmp_path / "strokes.png")

    out = tmp_path / "gen.png"
    done = cli(
        "generate",
        "--model",
        str(model),
        "--prompt",
        "a red barn",
        "--strokes",
        str(tmp_path / "strokes.png"),
        "--palette",
        "#87b4e6=sky:1.0",
        "--palette",
        "#468c3c=grass",
        "--steps",
        "5",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["prompt"] == "a red barn, sky, grass" and summary["model_evals"] == 5
    assert Image.open(out).size == (64, 64)

    edited = tmp_path / "edit.png"
    done = cli(
        "edit",
        "--model",
        str(model),
        "--image",
        str(out),
        "--source-prompt",
        "a red barn",
        "--prompt",
        "a blue barn",
        "--steps",
        "5",
        "--report",
        "--out",
        str(edited),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["inversion_steps"] == 5
    assert report["evals_per_inversion_step"] >= 1
    assert report["reconstruction_psnr"] > 10 and report["vae_ceiling_psnr"] > 10
    assert edited.exists()


def test_bad_input_is_a_clear_error_not_a_traceback(tmp_path):
    model = save_tiny_pipeline(tmp_path / "model")
    done = cli(
        "generate",
        "--model",
        str(model),
        "--prompt",
        "x",
        "--strokes",
        "data:image/png;base64,%%",
        "--width",
        "64",
        "--height",
        "64",
        "--out",
        str(tmp_path / "o.png"),
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: strokes:") and "Traceback" not in done.stderr
