"""Issue 15's binding levers: each region mode and weight on the lab's scenes, shape and colour binding
accuracy of the bound objects (the report's binding rows), and the stroke MSE the control costs.

    python tests/measure/binding_modes.py [--plan quick|full] [--method gradop+|text] [--decoder NAME]
        [--threads N] [--only LABEL ...]
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lib_guided.adapters.diffusers_model import load_model  # noqa: E402
from lib_guided.lab import binding_eval  # noqa: E402
from lib_guided.lab.classifier import load_classifier  # noqa: E402
from lib_guided.lab.eval_scenes import eval_scenes, stack_images  # noqa: E402
from lib_guided.lab.metrics import faithfulness_mse  # noqa: E402
from lib_guided.lab.report_plan import FULL, QUICK  # noqa: E402
from lib_guided.lab.synthesis_eval import SynthesisSetting, repeat_scenes, synthesise  # noqa: E402

# label -> (region mode, region weight); weight 0 is the "without control" row
VARIANTS = {
    "off": ("bias", 0.0),
    "bias 1": ("bias", 1.0),
    "bias 2": ("bias", 2.0),
    "masked 0.5": ("masked", 0.5),
    "masked 1": ("masked", 1.0),
    "masked 2": ("masked", 2.0),
    "prompts 0.5": ("prompts", 0.5),
    "prompts 1": ("prompts", 1.0),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--plan", choices=("quick", "full"), default="quick")
    parser.add_argument("--method", default="gradop+")
    parser.add_argument("--decoder", default="full")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, classifier = load_model(args.model), load_classifier()
    plan = QUICK if args.plan == "quick" else FULL
    scenes = eval_scenes(plan.scenes)
    repeated = repeat_scenes(scenes, plan.per_scene)
    strokes = stack_images(repeated, "strokes")
    setting = SynthesisSetting(args.method, args.method, decoder=args.decoder)
    rows = []
    for label, (mode, weight) in VARIANTS.items():
        if args.only and label not in args.only:
            continue
        started = time.time()
        images = synthesise(
            model,
            scenes,
            setting,
            steps=plan.steps,
            cfg=plan.cfg,
            seed=plan.seed,
            per_scene=plan.per_scene,
            bind_objects=True,
            region_weight=weight,
            region_mode=mode,
        )
        scored = binding_eval.binding_accuracy(classifier, images, repeated)
        row = {
            "variant": label,
            "shape": round(scored["accuracy"], 3),
            "colour": round(scored["colour_accuracy"], 3),
            "objects": scored["objects"],
            "stroke_mse": round(float(faithfulness_mse(images, strokes).mean()), 5),
            "seconds": round(time.time() - started, 1),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"plan": args.plan, "method": args.method, "rows": rows}, indent=1)
        )


if __name__ == "__main__":
    main()
