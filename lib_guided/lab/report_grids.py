"""The report's example grids: strokes against SDEdit and ours, inversions, and edits with their masks."""

from __future__ import annotations

from lib_guided.lab import editing_eval, inversion_eval
from lib_guided.lab.eval_scenes import stack_images
from lib_guided.lab.report_plan import GRADOP_PLUS_DEFAULT, ReportPlan


def example_grids(
    model, plan: ReportPlan, scenes, images, controlled, inv_scenes, edit_scenes, edited
) -> dict:
    """Rows of images per grid, each row a column of the picture (see report_markdown.PLOTS)."""
    n = plan.examples
    pick = slice(0, n * plan.per_scene, plan.per_scene)  # the first image of each of the first n scenes
    sdedit = next(s for s in plan.synthesis if s.method == "sdedit" and s.strength >= 0.7)
    steps = min(plan.inversion_steps)
    fewest = min(x.steps for x in plan.edits)
    auto = next(e for e in plan.edits if e.solver == "aidi-a" and e.steps == fewest and e.mask == "auto")
    examples = editing_eval.example_edits(
        model, edit_scenes[:n], auto, edit_cfg=plan.edit_cfg, seed=plan.seed
    )
    no_injection = next((e for e in plan.edits if e.mask == "auto" and e.injection == 0 and e != auto), None)
    return {
        "synthesis": {
            "strokes": stack_images(scenes[:n], "strokes"),
            f"SDEdit ({sdedit.setting})": images[sdedit][pick],
            "GradOP+": images[GRADOP_PLUS_DEFAULT][pick],
            "+ region control": controlled[pick],
            "real scene": stack_images(scenes[:n]),
        },
        "inversion": {
            "image": stack_images(inv_scenes[:n]),
            f"DDIM inversion, {steps} steps": inversion_eval.reconstructions(
                model, inv_scenes[:n], "ddim", steps
            ),
            f"AIDI-A, {steps} steps": inversion_eval.reconstructions(model, inv_scenes[:n], "aidi-a", steps),
        },
        "editing": {
            "image": stack_images(edit_scenes[:n]),
            "reconstruction": examples["reconstruction"],
            "automatic mask": examples["mask"],
            f"edit (injection {auto.injection:g})": examples["edit"],
            **({"edit, no injection": edited[no_injection][:n]} if no_injection is not None else {}),
        },
    }
