"""Issue 15's stroke-guidance levers on the lab's quick-plan (or full-plan) scenes: each GradOP+ variant's
stroke MSE, classifier FD and texture FD, and both FDs over SDEdit's at the same faithfulness (SDEdit's
strength sweep interpolated, as the report's claim does). Same scenes, seeds and scores as the report's
synthesis rows.

    python tests/measure/synthesis_levers.py [--model DIR] [--threads N] [--only LABEL ...] [--seed S]
        [--plan quick|full]
"""

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lib_guided.adapters.diffusers_model import load_model  # noqa: E402
from lib_guided.lab.classifier import load_classifier  # noqa: E402
from lib_guided.lab.eval_scenes import eval_scenes  # noqa: E402
from lib_guided.lab.report import realism_references, score_setting  # noqa: E402
from lib_guided.lab.report_plan import FULL, QUICK  # noqa: E402
from lib_guided.lab.synthesis_eval import (  # noqa: E402
    SynthesisSetting,
    sdedit_at,
)

DEFAULT = dict(decoder="linear-anchored-half")  # what users get


def adam(**knobs) -> dict:
    """A variant of the paper's step (Adam, lr 0.1), the default until the normalised step won."""
    return {"optimiser": "adam", "lr": 0.1, **knobs}


VARIANTS = {
    "default (0.8, K 3, N 12, normalised lr 0.05, x0, blur)": {},
    "paper's step (Adam, lr 0.1)": adam(),
    "Adam, full VAE decoder": adam(decoder="full"),
    "Adam, linear-local decoder": adam(decoder="linear-local"),
    # issue 11: the full VAE's passes cut by fewer Adam steps at a proportionally larger lr
    "Adam, full VAE decoder, N 6, lr 0.2": adam(decoder="full", adam_steps=6, lr=0.2),
    "Adam, full VAE decoder, N 4, lr 0.3": adam(decoder="full", adam_steps=4, lr=0.3),
    "Adam, full VAE decoder, N 3, lr 0.4": adam(decoder="full", adam_steps=3, lr=0.4),
    "Adam, full VAE decoder, K 2, N 4, lr 0.3": adam(decoder="full", injection_steps=2, adam_steps=4, lr=0.3),
    "Adam, linear-local decoder, N 4, lr 0.3": adam(decoder="linear-local", adam_steps=4, lr=0.3),
    "Adam, N 4, lr 0.3": adam(adam_steps=4, lr=0.3),
    "Adam, strength 0.7": adam(strength=0.7),
    "Adam, strength 0.9": adam(strength=0.9),
    "Adam, K 5": adam(injection_steps=5),
    "Adam, K 1": adam(injection_steps=1),
    "Adam, N 24": adam(adam_steps=24),
    "Adam, N 48": adam(adam_steps=48),
    "Adam, N 24, lr 0.05": adam(adam_steps=24, lr=0.05),
    "Adam, lr 0.05": adam(lr=0.05),
    "Adam, lr 0.2": adam(lr=0.2),
    "Adam, noisy target (the reference's)": adam(target="noisy"),
    "Adam, median + palette painting": adam(painting="median-quantize"),
    # the loss's blur: a wider one leaves the model the detail the strokes do not paint (sun, clouds)
    "Adam, blur 71": adam(blur_size=71),
    "Adam, blur 101": adam(blur_size=101),
    "Adam, phases late, strength 0.5": adam(strength=0.5),
    "Adam, phases late, strength 0.3": adam(strength=0.3),
    # Adam moves every latent coordinate by ~lr whatever its gradient; steepest descent moves them by it
    "normalised GD, lr 0.1": dict(lr=0.1),
    "normalised GD, lr 0.2": dict(lr=0.2),
    "normalised GD, lr 0.03": dict(lr=0.03),
    "normalised GD, lr 0.1, blur 71": dict(lr=0.1, blur_size=71),
    "normalised GD, lr 0.05, blur 71": dict(blur_size=71),
    "normalised GD, lr 0.05, full VAE decoder": dict(decoder="full"),
    "normalised GD, lr 0.05, linear-local decoder": dict(decoder="linear-local"),
    # issue 11: the full VAE's passes cut by fewer normalised steps at a proportionally larger lr
    "normalised GD, full VAE decoder, N 6, lr 0.1": dict(decoder="full", adam_steps=6, lr=0.1),
    "normalised GD, full VAE decoder, N 4, lr 0.1": dict(decoder="full", adam_steps=4, lr=0.1),
    "normalised GD, full VAE decoder, N 4, lr 0.15": dict(decoder="full", adam_steps=4, lr=0.15),
    "normalised GD, full VAE decoder, N 3, lr 0.15": dict(decoder="full", adam_steps=3, lr=0.15),
    "normalised GD, full VAE decoder, N 3, lr 0.2": dict(decoder="full", adam_steps=3, lr=0.2),
    "normalised GD, full VAE decoder, N 3, lr 0.25": dict(decoder="full", adam_steps=3, lr=0.25),
    "normalised GD, full VAE decoder, N 3, lr 0.3": dict(decoder="full", adam_steps=3, lr=0.3),
    "normalised GD, full VAE decoder, N 2, lr 0.3": dict(decoder="full", adam_steps=2, lr=0.3),
    "normalised GD, full VAE decoder, K 2, N 5, lr 0.12": dict(
        decoder="full", injection_steps=2, adam_steps=5, lr=0.12
    ),
    "normalised GD, full VAE decoder, K 2, N 5, lr 0.18": dict(
        decoder="full", injection_steps=2, adam_steps=5, lr=0.18
    ),
    "normalised GD, full VAE decoder, K 5, N 2, lr 0.3": dict(
        decoder="full", injection_steps=5, adam_steps=2, lr=0.3
    ),
    "normalised GD, N 6, lr 0.1": dict(adam_steps=6, lr=0.1),
    "normalised GD, N 4, lr 0.15": dict(adam_steps=4, lr=0.15),
    "normalised GD, lr 0.05, strength 0.9": dict(strength=0.9),
    "normalised GD, lr 0.05, K 5": dict(injection_steps=5),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--seed", type=int, default=QUICK.seed, help="noise seed of the first scene")
    parser.add_argument("--plan", choices=("quick", "full"), default="quick", help="the report plan's scenes")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    plan = replace(FULL if args.plan == "full" else QUICK, seed=args.seed)
    model, classifier = load_model(args.model), load_classifier()
    scenes = eval_scenes(plan.scenes)
    refs = realism_references(model, classifier, plan)

    def run(setting: SynthesisSetting) -> dict:
        row, _ = score_setting(
            model, classifier, plan, scenes, setting, refs["reference_features"], refs["texture_reference"]
        )
        return row

    sdedit = []
    for strength in (0.5, 0.6, 0.7, 0.8, 0.9):
        row = run(SynthesisSetting("sdedit", f"strength {strength}", strength=strength))
        sdedit.append(row)
        print(
            f"SDEdit {strength}: stroke MSE {row['faithfulness_mse']:.5f} FD {row['realism_fd']:.2f} "
            f"texture FD {row['texture_fd']:.2f}",
            flush=True,
        )
    texture_curve = [{**r, "realism_fd": r["texture_fd"]} for r in sdedit]
    text = run(SynthesisSetting("text", "text only"))
    print(
        f"text only: stroke MSE {text['faithfulness_mse']:.5f} FD {text['realism_fd']:.2f} "
        f"texture FD {text['texture_fd']:.2f}",
        flush=True,
    )
    for label, knobs in VARIANTS.items():
        if args.only and not any(o in label for o in args.only):
            continue
        row = run(SynthesisSetting("gradop+", label, **{**DEFAULT, **knobs}))
        fd_ratio = row["realism_fd"] / sdedit_at(row["faithfulness_mse"], sdedit)
        texture_ratio = row["texture_fd"] / sdedit_at(row["faithfulness_mse"], texture_curve)
        print(
            f"{label:44s} stroke MSE {row['faithfulness_mse']:.5f}  FD {row['realism_fd']:6.2f} "
            f"(x{fd_ratio:.2f} SDEdit)  texture FD {row['texture_fd']:6.2f} (x{texture_ratio:.2f})  "
            f"{row['seconds_per_scene']:.1f} s/scene",
            flush=True,
        )


if __name__ == "__main__":
    main()
