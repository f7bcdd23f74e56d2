"""The benchmark harness on the tiny model: the command runs quickly and writes complete rows."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

from lib_guided.bench.cases import case_specs
from lib_guided.bench.memory import PeakMemory
from lib_guided.bench.models import BenchModel, build_bench_model
from lib_guided.bench.report import REQUIRED_KEYS, add_ratios, format_markdown
from lib_guided.diffusion.guidance import guided_eps

ROOT = Path(__file__).resolve().parents[2]


def test_quick_tiny_benchmark_writes_every_case_with_ratios(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # the hang guard is the subprocess timeout (measured: 24 s on 2 busy cores); no wall-clock assertion,
    # machine speed is not what this test checks: the work done is (model_evals per row, below)
    done = subprocess.run(
        [sys.executable, "-m", "lib_guided.bench", "--arch", "tiny", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    assert {"cpu_count", "torch_version", "device_name"} <= set(report["machine"])
    rows = report["rows"]
    cases = [r["case"] for r in rows]
    assert cases[0] == "txt2img" and len(cases) == 1 + 5 + 1 + 1 + 8
    assert [r["case"] for r in rows if r.get("default")] == ["gradop+ linear-anchored-half"]
    fit = next(r for r in rows if r["case"].startswith("linear decoder fit"))
    assert fit["model_evals"] == 0 and fit["seconds"] > 0 and fit["baseline_steps"] == 10
    decoders = {
        f"gradop+ {d}"
        for d in ("full", "full-checkpointed", "linear", "linear-anchored", "linear-anchored-half")
    }
    assert decoders | {"img2img sdedit 0.8"} <= set(cases)
    assert {
        f"inversion {s} {n}" for s in ("ddim", "fixed-point", "aidi-e", "aidi-a") for n in (10, 20)
    } <= set(cases)
    for row in rows:
        assert set(REQUIRED_KEYS) <= set(row), row
        assert row["seconds_ratio_vs_plain"] > 0 and row["peak_memory_ratio_vs_plain"] > 0, row
        assert row["model_evals"] >= row["steps"] * (0.8 if row["case"].startswith("img2img") else 1)
    plain = rows[0]
    assert plain["seconds_ratio_vs_plain"] == 1.0 and plain["peak_memory_ratio_vs_plain"] == 1.0
    inversion = {r["case"]: r for r in rows if r["case"].startswith("inversion")}
    assert inversion["inversion ddim 10"]["model_evals_per_step"] == 1.0
    assert 0.0 <= inversion["inversion aidi-a 10"]["outside_model_share"] < 1.0
    assert "| gradop+ linear | 64 |" in (tmp_path / "bench.md").read_text()


def test_ratios_are_against_the_plain_row_of_the_same_size():
    def row(case, size, seconds, peak, extra):
        return {
            "case": case,
            "resolution": size,
            "seconds": seconds,
            "peak_memory_mb": peak,
            "peak_extra_memory_mb": extra,
            "steps": 10,
            "model_evals": 10,
        }

    rows = add_ratios(
        [
            row("txt2img", 64, 2.0, 100.0, 10.0),
            row("gradop+ full", 64, 5.0, 150.0, 40.0),
            row("txt2img", 128, 4.0, 200.0, 0.2),
            row("gradop+ full", 128, 6.0, 300.0, 5.0),
        ]
    )
    assert [r["seconds_ratio_vs_plain"] for r in rows] == [1.0, 2.5, 1.0, 1.5]
    assert rows[1]["peak_memory_ratio_vs_plain"] == 1.5 and rows[1]["peak_extra_memory_ratio_vs_plain"] == 4.0
    assert rows[3]["peak_extra_memory_ratio_vs_plain"] is None  # a 0.2 MB baseline is noise, not a base
    settings = {
        "arch": "tiny",
        "device": "cpu",
        "dtype": "float32",
        "repeats": 1,
        "warmup": 0,
        "isolate": False,
        "steps": 10,
        "cfg": 7.5,
        "tol": 1e-3,
        "max_iter": 10,
        "adam_steps": 12,
        "lr": 0.05,
        "optimiser": "normalised",
    }
    machine = {"device_name": "cpu", "torch_version": "x", "cpu_count": 2, "torch_threads": 1}
    table = format_markdown({"machine": machine, "settings": settings, "memory_method": "m", "rows": rows})
    assert "| gradop+ full | 128 | — |" not in table and "| gradop+ full | 64 |" in table


def test_case_list_starts_each_size_with_the_plain_baseline():
    specs = case_specs([64, 128], [20, 50], [10, 20], ["full", "linear"], ["ddim", "aidi-a"])
    cases = [(s.case, s.steps) for s in specs]
    first = ["txt2img", "gradop+ full", "gradop+ linear", "img2img sdedit 0.8"]
    assert cases[:8] == [(c, 20) for c in first] + [(c, 50) for c in first]
    assert cases[8] == ("linear decoder fit (once per checkpoint)", 0)
    assert specs[13].case == "txt2img" and specs[13].size == 128 and len(specs) == 26


def test_each_step_count_has_its_own_baseline_and_the_default_is_marked():
    def row(case, steps, seconds):
        extra = {"peak_memory_mb": 100.0, "peak_extra_memory_mb": 10.0, "model_evals": steps}
        return {"case": case, "resolution": 64, "steps": steps, "seconds": seconds, **extra}

    rows = add_ratios(
        [
            row("txt2img", 20, 2.0),
            row("gradop+ a", 20, 3.0),
            row("txt2img", 50, 5.0),
            row("gradop+ a", 50, 6.0),
            row("inversion x 10", 10, 4.0),
            row("fit", 0, 1.0),
        ],
        default_case="gradop+ a",
    )
    assert [r["seconds_ratio_vs_plain"] for r in rows] == [1.0, 1.5, 1.0, 1.2, 2.0, 0.5]
    assert [r["baseline_steps"] for r in rows] == [20, 20, 50, 50, 20, 20]
    assert [bool(r.get("default")) for r in rows] == [False, True, False, True, False, False]


def test_cpu_peak_memory_sees_a_large_allocation():
    memory = PeakMemory(torch.device("cpu"))
    memory.start()
    block = torch.ones(64 * 1024 * 1024 // 4)  # 64 MB, touched
    del block
    peak, extra = memory.stop()
    assert peak >= extra > 40.0, (peak, extra)


def plain(config) -> dict:
    """A model config with tuples and lists alike (configs written as either compare equal)."""
    return {k: list(v) if isinstance(v, (tuple, list)) else v for k, v in dict(config).items()}


def test_bench_tiny_architecture_matches_the_test_model(tmp_path):
    from tests.tiny_models import build_tiny_components

    unet, vae, _, _ = build_tiny_components(tmp_path)
    bench = build_bench_model("tiny")
    for ours, theirs in ((bench.unet, unet), (bench.vae, vae)):
        assert plain(ours.config) == plain(theirs.config)


def test_sdxl_style_conditioning_passes_the_added_embeddings(tmp_path):
    """The SDXL path of BenchModel on a narrow UNet with SDXL's text-time added conditioning."""
    from diffusers import UNet2DConditionModel

    from tests.tiny_models import build_tiny_components

    _, vae, _, _ = build_tiny_components(tmp_path)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        layers_per_block=1,
        attention_head_dim=8,
        norm_num_groups=8,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=16 + 6 * 8,
    ).eval()
    model = BenchModel(unet, vae, "sdxl", cond_shape=(5, 32, 16))
    cond, uncond = model.encode_prompt(["a barn", "a lake"]), model.encode_prompt([""])
    assert cond["crossattn"].shape == (2, 5, 32) and cond["text_embeds"].shape == (2, 16)
    assert cond["time_ids"].shape == (2, 6)
    assert torch.equal(
        model.encode_prompt(["a barn"])["crossattn"][0], cond["crossattn"][0]
    )  # fixed per prompt
    with torch.no_grad():
        eps = guided_eps(model, torch.randn(2, 4, 8, 8), torch.tensor(3.0), cond, uncond, 7.5)
    assert eps.shape == (2, 4, 8, 8) and torch.isfinite(eps).all() and model.evals == 1


def test_gradop_rows_run_the_adam_steps_asked_for_and_lose_the_default_mark():
    from lib_guided.bench.cases import CaseRunner, CaseSpec
    from lib_guided.bench.run import _default_case
    from lib_guided.gradop.optimise import GradOPSettings

    model = build_bench_model("tiny")
    decodes = []
    original = model.decode

    def counting_decode(latent):
        decodes.append(latent.shape)
        return original(latent)

    model.decode = counting_decode  # an instance attribute: this model only
    runner = CaseRunner(model, torch.device("cpu"), gradop=GradOPSettings(adam_steps=2, lr=0.5))
    prepared = runner.prepare(CaseSpec("gradop+ full", "gradop+", 64, 10, decoder="full"))
    decodes.clear()
    prepared.run()
    assert len(decodes) == 3 * 2 + 1  # K 3 phases x N 2 gradient decodes, then the image itself
    default = {"adam_steps": 12, "lr": 0.05, "optimiser": "normalised"}
    assert _default_case(default) == "gradop+ linear-anchored-half"
    assert _default_case({**default, "adam_steps": 2, "lr": 0.5}) is None
    assert _default_case({**default, "optimiser": "adam", "lr": 0.1}) is None  # the paper's step


def test_kinds_time_only_the_rows_asked_for_beside_the_plain_baseline(tmp_path):
    command = [sys.executable, "-m", "lib_guided.bench", "--arch", "tiny", "--quick", "--out", str(tmp_path)]
    command += ["--decoders", "linear", "--kinds", "gradop+"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    rows = json.loads((tmp_path / "bench.json").read_text())["rows"]
    assert [r["case"] for r in rows] == ["txt2img", "gradop+ linear"]  # the baseline always runs
    assert rows[1]["seconds_ratio_vs_plain"] > 0
