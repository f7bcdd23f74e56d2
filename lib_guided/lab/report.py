"""``python -m lib_guided.lab report --out DIR [--quick] [--model DIR]``: the papers' claims, measured.

Writes DIR/report.json (every number), DIR/report.md (tables and the claims) and PNG plots and example
grids. Every run is seeded: the same model, plan and torch build give the same report.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from lib_guided.inversion.invert import InversionSettings
from lib_guided.lab import binding_eval, editing_eval, inversion_eval, realism
from lib_guided.lab.classifier import WEIGHTS, LabClassifier, load_classifier
from lib_guided.lab.eval_scenes import eval_scenes, reference_images, stack_images
from lib_guided.lab.metrics import faithfulness_mse, frechet_distance
from lib_guided.lab.model_quality import model_note, model_quality, shown_path
from lib_guided.lab.report_grids import example_grids
from lib_guided.lab.report_plan import (
    EARLY_EXIT_REFERENCE_ITERATIONS,
    FULL,
    GRADOP_PLUS_DEFAULT,
    QUICK,
    TEXT,
    ReportPlan,
)
from lib_guided.lab.synthesis_eval import repeat_scenes, score_synthesis, synthesise
from lib_guided.protocol import DiffusionModel
from lib_guided.stroke_job import StrokeSettings


class Timer:
    def __init__(self, log: Callable[[str], None]) -> None:
        self.log, self.start, self.sections = log, time.time(), {}

    def section(self, name: str, started: float) -> None:
        self.sections[name] = round(time.time() - started, 1)
        self.log(f"{name}: {self.sections[name]} s (total {time.time() - self.start:.0f} s)")


def _vae_round_trip(model: DiffusionModel, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat(
            [model.decode(model.encode(images[i : i + 64])).clamp(0, 1) for i in range(0, len(images), 64)]
        )


def realism_references(model, classifier: LabClassifier, plan: ReportPlan) -> dict:
    """The Fréchet distances' yardsticks, at the same sample size as every generated set (real images and
    strokes of as many test scenes as there are generated images), for the classifier FD and the texture
    FD (lib_guided.lab.realism); the blurred real images show the texture FD sees lost detail."""
    held_out = reference_images(plan.reference)
    reference = classifier.features(held_out)
    texture = realism.standardised_features(held_out)
    scenes = eval_scenes(plan.scenes * plan.per_scene)
    real = stack_images(scenes)
    strokes = stack_images(scenes, "strokes")
    vae = _vae_round_trip(model, real)
    return {
        "reference_features": reference,
        "texture_reference": texture,
        "real_vs_real_fd": frechet_distance(classifier.features(real), reference),
        "strokes_vs_real_fd": frechet_distance(classifier.features(strokes), reference),
        "vae_vs_real_fd": frechet_distance(classifier.features(vae), reference),
        "real_faithfulness_mse": float(faithfulness_mse(real, strokes).mean()),
        "real_vs_real_texture_fd": realism.texture_fd(real, texture),
        "strokes_vs_real_texture_fd": realism.texture_fd(strokes, texture),
        "vae_vs_real_texture_fd": realism.texture_fd(vae, texture),
        "blurred_vs_real_texture_fd": realism.texture_fd(realism.blurred(real), texture),
    }


def score_setting(
    model, classifier, plan: ReportPlan, scenes, setting, reference, texture_reference=None
) -> tuple[dict, torch.Tensor]:
    """One synthesis row: ``setting`` run on the plan's scenes and seeds, scored (faithfulness, FDs) and
    timed; also the images. The report's rows and the lever scripts (tests/measure) share it."""
    started = time.time()
    out = synthesise(
        model, scenes, setting, steps=plan.steps, cfg=plan.cfg, seed=plan.seed, per_scene=plan.per_scene
    )
    scores = score_synthesis(
        out, repeat_scenes(scenes, plan.per_scene), classifier, reference, texture_reference
    )
    return {**scores, "seconds_per_scene": round((time.time() - started) / len(scenes), 3)}, out


def run_synthesis(
    model, classifier, plan: ReportPlan, scenes, reference, timer: Timer, texture_reference=None
):
    rows, images = [], {}
    for setting in plan.synthesis:
        started = time.time()
        row, images[setting] = score_setting(
            model, classifier, plan, scenes, setting, reference, texture_reference
        )
        rows.append({"method": setting.method, "setting": setting.setting, **row})
        timer.section(f"synthesis {setting.method} ({setting.setting})", started)
    return rows, images


def run_binding(model, classifier, plan: ReportPlan, scenes, without: torch.Tensor, timer: Timer):
    """GradOP+ with every object colour bound to its phrase, region weight 0 vs plan.region_weight.

    The phrases are already in the caption, so with weight 0 the prompt and the forward are exactly
    those of the plain GradOP+ synthesis run (same seeds): its images are reused as "without control".
    """
    started = time.time()
    with_control = synthesise(
        model,
        scenes,
        GRADOP_PLUS_DEFAULT,
        steps=plan.steps,
        cfg=plan.cfg,
        seed=plan.seed,
        per_scene=plan.per_scene,
        bind_objects=True,
        region_weight=plan.region_weight,
    )
    real = stack_images(scenes).repeat_interleave(plan.per_scene, dim=0)
    scenes = repeat_scenes(scenes, plan.per_scene)
    scored = {
        name: binding_eval.binding_accuracy(classifier, images, scenes)
        for name, images in (
            ("without_control", without),
            ("with_control", with_control),
            ("real_images", real),
            ("vae_round_trip", _vae_round_trip(model, real)),
        )
    }
    result = {name: s["accuracy"] for name, s in scored.items()}
    result.update(
        {
            "colour_without_control": scored["without_control"]["colour_accuracy"],
            "colour_with_control": scored["with_control"]["colour_accuracy"],
            "objects": scored["real_images"]["objects"],
            "region_weight": plan.region_weight,
            "region_mode": StrokeSettings.region_mode,
        }
    )
    timer.section("binding", started)
    return result, with_control


def run_early_exit(model, plan: ReportPlan, scenes, timer: Timer) -> list[dict]:
    """Each early-exit solver at each tolerance (iteration cap 10) and at a fixed number of iterations
    (tolerance never reached): PSNR and model evaluations per step."""
    started = time.time()
    settings = [{"tol": tol, "max_iter": 10} for tol in plan.early_exit_tols]
    settings.append({"tol": 1e-12, "max_iter": EARLY_EXIT_REFERENCE_ITERATIONS})
    rows = []
    for setting in settings:
        measured = inversion_eval.measure(
            model, scenes, plan.early_exit_solvers, plan.inversion_steps, **setting
        )
        for row in measured["inversion"]:
            fixed = setting["max_iter"] == EARLY_EXIT_REFERENCE_ITERATIONS
            rows.append(
                {
                    "solver": row["solver"],
                    "steps": row["steps"],
                    "exit": f"{setting['max_iter']} iterations" if fixed else f"tol {setting['tol']:g}",
                    **setting,
                    "psnr": row["psnr"],
                    "model_evals_per_step": row["model_evals_per_step"],
                    "converged_fraction": row.get("converged_fraction"),
                }
            )
    timer.section("inversion early exit", started)
    return rows


def run_editing(model, classifier, plan: ReportPlan, timer: Timer):
    scenes = eval_scenes(plan.edit_scenes)
    tasks = editing_eval.tasks_for(scenes)
    originals = stack_images(scenes)
    rows, images = [], {}
    for setting in plan.edits:
        started = time.time()
        edited = editing_eval.run_edits(model, scenes, setting, edit_cfg=plan.edit_cfg, seed=plan.seed)
        scores = editing_eval.edit_scores(classifier, edited, originals, scenes, tasks)
        images[setting] = edited
        rows.append(
            {
                "solver": setting.solver,
                "steps": setting.steps,
                "mask": setting.mask,
                "injection": setting.injection,
                "edit_success": float(scores["success"].float().mean()),
                "background_psnr": _finite_mean(scores["background_psnr"]),
                "seconds_per_image": round((time.time() - started) / len(scenes), 3),
            }
        )
        timer.section(
            f"editing {setting.solver} {setting.steps} steps, mask {setting.mask}, "
            f"injection {setting.injection:g}",
            started,
        )
    return rows, images, scenes


def editing_yardsticks(classifier, scenes) -> dict:
    """The edit metric on ground truth: a pixel recolouring of the object (should succeed, with the
    background untouched) and the unedited input (should fail)."""
    tasks = editing_eval.tasks_for(scenes)
    originals = stack_images(scenes)
    truth = editing_eval.images_of(
        [editing_eval.recoloured(s, t) for s, t in zip(scenes, tasks, strict=True)]
    )
    recoloured = editing_eval.edit_scores(classifier, truth, originals, scenes, tasks)
    unedited = editing_eval.edit_scores(classifier, originals, originals, scenes, tasks)
    return {
        "recoloured_success": float(recoloured["success"].float().mean()),
        "unedited_success": float(unedited["success"].float().mean()),
    }


def run_model_quality(
    model, classifier, plan: ReportPlan, scenes, images, synthesis, folder, references: tuple
) -> dict:
    """model_quality on the synthesis run's text-only samples; sampled and scored like a synthesis row
    here only when the plan has no text-only setting."""
    repeated = repeat_scenes(scenes, plan.per_scene)
    if TEXT not in images:
        images = {
            TEXT: synthesise(
                model, scenes, TEXT, steps=plan.steps, cfg=plan.cfg, seed=plan.seed, per_scene=plan.per_scene
            )
        }
        synthesis = [{"method": "text", **score_synthesis(images[TEXT], repeated, classifier, *references)}]
    real = stack_images(scenes).repeat_interleave(plan.per_scene, dim=0)
    return model_quality(classifier, images[TEXT], repeated, synthesis, folder, real_images=real)


def _finite_mean(values: torch.Tensor) -> float:
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.inf


def classifier_summary(path: Path = WEIGHTS) -> dict:
    """The shipped classifier's validation accuracies, stored in its safetensors metadata."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return json.loads((f.metadata() or {}).get("report", "{}")).get("validation", {})


def _figures(plan: ReportPlan, report: dict, grids: dict[str, dict[str, torch.Tensor]], out: Path) -> None:
    from lib_guided.lab import report_plots

    report_plots.realism_vs_faithfulness(report, out / "realism_vs_faithfulness.png")
    report_plots.inversion_curves(report, out / "inversion_psnr_vs_evals.png")
    report_plots.binding_bars(report, out / "binding.png")
    for name, columns in grids.items():
        report_plots.image_grid(columns, out / f"examples_{name}.png", plan.examples)


def run_report(
    model: DiffusionModel,
    classifier: LabClassifier,
    plan: ReportPlan,
    out: Path,
    *,
    model_folder: Path | None = None,
    plan_name: str = "",
    log: Callable[[str], None] = print,
    plots: bool = True,
) -> dict:
    """Measure everything in ``plan``; write report.json, report.md and the figures into ``out``."""
    from lib_guided.lab.report_claims import claims
    from lib_guided.lab.report_markdown import render

    out.mkdir(parents=True, exist_ok=True)
    timer = Timer(log)
    scenes = eval_scenes(plan.scenes)

    started = time.time()
    refs = realism_references(model, classifier, plan)
    reference, texture_reference = refs.pop("reference_features"), refs.pop("texture_reference")
    timer.section("realism references", started)
    synthesis, images = run_synthesis(model, classifier, plan, scenes, reference, timer, texture_reference)
    started = time.time()
    quality = run_model_quality(
        model, classifier, plan, scenes, images, synthesis, model_folder, (reference, texture_reference)
    )
    timer.section("model quality", started)
    binding, controlled = run_binding(model, classifier, plan, scenes, images[GRADOP_PLUS_DEFAULT], timer)

    started = time.time()
    inv_scenes = eval_scenes(plan.inversion_scenes)
    inversion = inversion_eval.measure(model, inv_scenes, plan.inversion_solvers, plan.inversion_steps)
    timer.section("inversion", started)
    early_exit = run_early_exit(model, plan, inv_scenes, timer)
    editing, edited, edit_scenes = run_editing(model, classifier, plan, timer)

    report = {
        "model": shown_path(model_folder),
        "model_note": model_note(model_folder) if model_folder else "",
        "plan_name": plan_name,
        "plan": plan.to_json(),
        "threads": torch.get_num_threads(),
        "classifier_validation": classifier_summary(),
        "vae_ceiling_psnr": inversion["vae_ceiling_psnr"],
        "vae_ceiling_ssim": inversion["vae_ceiling_ssim"],
        **refs,
        "synthesis": synthesis,
        "binding": binding,
        # measure_inversion reports NaN convergence for ddim (nothing to converge): JSON has no NaN
        "inversion": [
            {k: v for k, v in row.items() if not (isinstance(v, float) and math.isnan(v))}
            for row in inversion["inversion"]
        ],
        "inversion_settings": {
            "inversion_cfg": 1.0,
            "tol": InversionSettings.tol,
            "max_iter": InversionSettings.max_iter,
        },
        "inversion_early_exit": early_exit,
        "editing": editing,
        "editing_ground_truth": editing_yardsticks(classifier, edit_scenes),
        "model_quality": quality,
    }
    if plots:
        started = time.time()
        grids = example_grids(model, plan, scenes, images, controlled, inv_scenes, edit_scenes, edited)
        _figures(plan, report, grids, out)
        timer.section("figures", started)
    report["sections_seconds"] = timer.sections
    report["seconds"] = round(time.time() - timer.start, 1)
    report["claims"] = claims(report)
    (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (out / "report.md").write_text(render(report), encoding="utf-8")
    return report


def _load(model_dir: str | None):
    from lib_guided.adapters.diffusers_model import load_model, shipped_model_folder

    folder = Path(model_dir) if model_dir else shipped_model_folder()
    return load_model(str(folder)), folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lib_guided.lab report", description=__doc__)
    parser.add_argument("--out", required=True, help="folder for report.json, report.md and the figures")
    parser.add_argument("--quick", action="store_true", help="the CI plan: a few minutes on 2 cores")
    parser.add_argument("--model", help="diffusers folder (default: the shipped lab model)")
    parser.add_argument("--classifier", help="classifier safetensors (default: the shipped one)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        model, folder = _load(args.model)
        classifier = load_classifier(args.classifier)
    except FileNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    plan, name = (QUICK, "quick") if args.quick else (FULL, "full")
    report = run_report(
        model, classifier, plan, Path(args.out), model_folder=folder, plan_name=name, plots=not args.no_plots
    )
    print(json.dumps(report["claims"], indent=2))
    return 0
