"""Issue 11's levers on the lab's quick plan: GradOP+ synthesis rows (the same scenes, seeds and scores as
``python -m lib_guided.lab report --quick``) for each decoder variant; stroke MSE and FDs against `full`.

    python tests/measure/decoder_levers.py [THREADS]

Variants: the anchored linear map re-anchored every 6 Adam steps / once per phase / every step, with full-
or half-resolution anchors; the full VAE's gradient on the latent pooled 2x; the full VAE at N 6, lr 0.2.
"""

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
from lib_guided.lab.report_plan import QUICK  # noqa: E402
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


def main() -> None:
    torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
    pipeline.make_gradient_decoder = with_pooled_full(pipeline.make_gradient_decoder)
    stroke_job.DECODERS = (*stroke_job.DECODERS, POOLED_FULL)
    model, classifier, plan = load_model(None), load_classifier(), QUICK
    scenes = eval_scenes(plan.scenes)
    refs = realism_references(model, classifier, plan)
    variants = [  # (label, decoder, re-anchor every n Adam steps, Adam steps, lr)
        ("full (the reference)", "full", None, 12, 0.1),
        ("linear-anchored, every 6", "linear-anchored", 6, 12, 0.1),
        ("linear-anchored, once per phase", "linear-anchored", 0, 12, 0.1),
        ("linear-anchored, every step", "linear-anchored", 1, 12, 0.1),
        ("linear-anchored-half, every 6", "linear-anchored-half", 6, 12, 0.1),
        ("linear-anchored-half, once per phase", "linear-anchored-half", 0, 12, 0.1),
        ("linear-anchored-half, every 2", "linear-anchored-half", 2, 12, 0.1),
        ("full on the pooled latent", POOLED_FULL, None, 12, 0.1),
        ("full, N 6, lr 0.2", "full", None, 6, 0.2),
    ]
    reference_mse = None
    for label, decoder, every, adam_steps, lr in variants:
        factory.ANCHOR_EVERY = 6 if every is None else every
        setting = SynthesisSetting("gradop+", label, decoder=decoder, adam_steps=adam_steps, lr=lr)
        s, _ = score_setting(
            model, classifier, plan, scenes, setting, refs["reference_features"], refs["texture_reference"]
        )
        seconds = s["seconds_per_scene"]
        reference_mse = reference_mse or s["faithfulness_mse"]
        change = 100 * (s["faithfulness_mse"] / reference_mse - 1)
        print(
            f"{label:38s} stroke MSE {s['faithfulness_mse']:.5f} ({change:+.1f} %)  "
            f"FD {s['realism_fd']:.2f}  texture FD {s['texture_fd']:.2f}  {seconds:.2f} s/scene",
            flush=True,
        )


if __name__ == "__main__":
    main()
