"""Issue 11's levers on the lab's quick (or full) plan: GradOP+ synthesis rows (the same scenes, seeds and
scores as ``python -m lib_guided.lab report``) for each decoder variant; stroke MSE and FDs against `full`.

    python tests/measure/decoder_levers.py [--threads N] [--plan quick|full] [--only LABEL ...]

Variants, with the default step (normalised, lr 0.05): the anchored linear map with half-resolution
anchors renewed every 6 / 4 / 3 / 2 steps, with full-resolution ones every 6 / 4. With the paper's step
(Adam, lr 0.1): re-anchored every 6 steps / once per phase / every step; the full VAE's gradient on the
latent pooled 2x; the full VAE at N 6, lr 0.2.
"""

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import lib_guided.pipeline as pipeline  # noqa: E402
import lib_guided.stroke_job as stroke_job  # noqa: E402
from lib_guided.adapters.diffusers_model import load_model  # noqa: E402
from lib_guided.gradop.decoders import factory  # noqa: E402
from lib_guided.lab.classifier import load_classifier  # noqa: E402
from lib_guided.lab.eval_scenes import eval_scenes  # noqa: E402
from lib_guided.lab.report import realism_references, score_setting  # noqa: E402
from lib_guided.lab.report_plan import FULL, QUICK  # noqa: E402
from lib_guided.lab.synthesis_eval import SynthesisSetting  # noqa: E402

POOLED_FULL = "full-pooled"  # this script's own variant: not a decoder the extension offers


def with_pooled_full(make):
    def make_decoder(name, model, *args, **kwargs):
        if name != POOLED_FULL:
            return make(name, model, *args, **kwargs)

        def decode(w):
            return F.interpolate(model.decode(F.avg_pool2d(w, 2)), scale_factor=2, mode="bilinear")

        return decode

    return make_decoder


ADAM = {"optimiser": "adam", "lr": 0.1}  # the paper's step, the default before the normalised one
VARIANTS = [  # (label, decoder, renew the anchor every n steps, SynthesisSetting knobs)
    ("full (the reference)", "full", None, {}),
    ("linear-anchored-half, every 6", "linear-anchored-half", 6, {}),
    ("linear-anchored-half, every 4 (the default)", "linear-anchored-half", 4, {}),
    ("linear-anchored-half, every 3", "linear-anchored-half", 3, {}),
    ("linear-anchored-half, every 2", "linear-anchored-half", 2, {}),
    ("linear-anchored, every 6 (its default)", "linear-anchored", 6, {}),
    ("linear-anchored, every 4", "linear-anchored", 4, {}),
    ("Adam: full", "full", None, ADAM),
    ("Adam: linear-anchored, every 6", "linear-anchored", 6, ADAM),
    ("Adam: linear-anchored, once per phase", "linear-anchored", 0, ADAM),
    ("Adam: linear-anchored, every step", "linear-anchored", 1, ADAM),
    ("Adam: linear-anchored-half, every 6", "linear-anchored-half", 6, ADAM),
    ("Adam: linear-anchored-half, once per phase", "linear-anchored-half", 0, ADAM),
    ("Adam: linear-anchored-half, every 2", "linear-anchored-half", 2, ADAM),
    ("Adam: full on the pooled latent", POOLED_FULL, None, ADAM),
    ("Adam: full, N 6, lr 0.2", "full", None, {"optimiser": "adam", "adam_steps": 6, "lr": 0.2}),
]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--plan", choices=("quick", "full"), default="quick")
    parser.add_argument("--only", nargs="*", default=None, help="labels containing any of these")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipeline.make_gradient_decoder = with_pooled_full(pipeline.make_gradient_decoder)
    stroke_job.DECODERS = (*stroke_job.DECODERS, POOLED_FULL)
    model, classifier = load_model(None), load_classifier()
    plan = FULL if args.plan == "full" else QUICK
    scenes = eval_scenes(plan.scenes)
    refs = realism_references(model, classifier, plan)
    reference_mse = {}  # per step: the full VAE's stroke MSE
    defaults = factory.ANCHOR_EVERY, factory.HALF_ANCHOR_EVERY
    for label, decoder, every, knobs in VARIANTS:
        if args.only and not label.startswith("full") and not any(o in label for o in args.only):
            continue
        factory.ANCHOR_EVERY, factory.HALF_ANCHOR_EVERY = defaults if every is None else (every, every)
        setting = SynthesisSetting("gradop+", label, decoder=decoder, **knobs)
        s, _ = score_setting(
            model, classifier, plan, scenes, setting, refs["reference_features"], refs["texture_reference"]
        )
        step = knobs.get("optimiser", "normalised")
        reference_mse.setdefault(step, s["faithfulness_mse"])
        change = 100 * (s["faithfulness_mse"] / reference_mse[step] - 1)
        print(
            f"{label:44s} stroke MSE {s['faithfulness_mse']:.5f} ({change:+.1f} % vs full)  "
            f"FD {s['realism_fd']:.2f}  texture FD {s['texture_fd']:.2f}  "
            f"{s['seconds_per_scene']:.2f} s/scene",
            flush=True,
        )


if __name__ == "__main__":
    main()
