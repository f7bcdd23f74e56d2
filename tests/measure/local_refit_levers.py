"""Issue 11: can ``linear-local`` pay for fewer full decodes? Each variant refits the linear map at the
phase starts from some mix of a random probe (one extra full decode) and the secant between this phase's
anchor and the previous one (no extra decode), on the lab's quick-plan synthesis rows (the same scenes,
seeds and scores as ``python -m lib_guided.lab report --quick``). Stroke MSE is compared with ``full``'s
0.01109 on the shipped model (quick plan).

    python tests/measure/local_refit_levers.py [THREADS] [--only LABEL ...]

The variants are this script's own decoders, not ones the extension offers.
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
from lib_guided.gradop.decoders.anchored import AnchoredLinearDecoder  # noqa: E402
from lib_guided.gradop.decoders.linear import area_downsample, design_rows, pixel_rows  # noqa: E402
from lib_guided.gradop.decoders.local_refit import ridge_refit  # noqa: E402
from lib_guided.lab.classifier import load_classifier  # noqa: E402
from lib_guided.lab.eval_scenes import eval_scenes  # noqa: E402
from lib_guided.lab.report import realism_references, score_setting  # noqa: E402
from lib_guided.lab.report_plan import QUICK  # noqa: E402
from lib_guided.lab.synthesis_eval import SynthesisSetting  # noqa: E402

FULL_STROKE_MSE = 0.01109  # `full` on the shipped model, quick plan (synthesis_levers.py, same scenes)


class SecantRefit(AnchoredLinearDecoder):
    """Anchored once per phase (pooled ``downscale`` x); the map refitted at phase starts from a probe in
    the first ``probe_phases`` phases and/or the secant to the previous anchor, with ``prior`` ("global":
    the fitted map; "previous": the map in use) as ridge prior; ``keep`` keeps every pair seen so far."""

    def __init__(self, full, linear, probe_phases=1, secant=True, prior="global", keep=False, downscale=1):
        super().__init__(full, linear, 0, downscale)
        self.global_linear = linear
        self.probe_phases, self.secant, self.prior, self.keep = probe_phases, secant, prior, keep
        self.phase, self.previous, self.pairs = 0, None, []

    def _seen(self, delta):  # what the (pooled) decode saw of a latent change
        s = self.anchor_downscale
        return delta if s == 1 else F.interpolate(F.avg_pool2d(delta, s), scale_factor=s, mode="nearest")

    @torch.no_grad()
    def start_phase(self, latent):
        g = self.global_linear
        f, k = g.scale_factor, g.kernel_size
        anchor = self.anchor_image(latent)
        base = area_downsample(anchor.double(), f)
        pairs = []
        if self.phase < self.probe_phases:
            generator = torch.Generator().manual_seed(self.phase)
            scale = 0.5 * float(latent.float().std())
            delta = torch.randn(latent.shape, generator=generator).to(latent) * scale
            probe = area_downsample(self.anchor_image(latent + delta).double(), f)
            pairs.append((design_rows(self._seen(delta), f, k, g.smoothing), pixel_rows(probe - base)))
        if self.secant and self.previous is not None:
            before, before_base = self.previous
            pairs.append(
                (design_rows(self._seen(latent - before), f, k, g.smoothing), pixel_rows(base - before_base))
            )
        self.pairs = (self.pairs + pairs) if self.keep else pairs
        if self.pairs:
            x = torch.cat([p[0] for p in self.pairs])
            y = torch.cat([p[1] for p in self.pairs])
            self.linear = ridge_refit(x, y, g if self.prior == "global" else self.linear, 0.1)
        self.previous = (latent.clone(), base)
        self.phase += 1
        self.set_anchor(latent, anchor)


VARIANTS = {  # label: (SecantRefit kwargs, full-resolution-equivalent decodes per image at K 3)
    "every phase probed (= linear-local)": (dict(probe_phases=3, secant=False), 6),
    "phase 1 probed, map kept": (dict(probe_phases=1, secant=False), 4),
    "phase 1 probed, secant refits, prior previous": (dict(probe_phases=1, prior="previous"), 4),
    "phase 1 probed, secant refits, all pairs": (dict(probe_phases=1, keep=True), 4),
    "secants only, all pairs": (dict(probe_phases=0, keep=True), 3),
    "secants only, prior previous": (dict(probe_phases=0, prior="previous"), 3),
    "half-res: every phase probed": (dict(probe_phases=3, secant=False, downscale=2), 1.5),
    "half-res: secants only, all pairs": (dict(probe_phases=0, keep=True, downscale=2), 0.75),
    "half-res: phase 1 probed, secants, all pairs": (dict(probe_phases=1, keep=True, downscale=2), 1.0),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("threads", nargs="?", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, classifier, plan = load_model(None), load_classifier(), QUICK
    scenes = eval_scenes(plan.scenes)
    refs = realism_references(model, classifier, plan)
    make = pipeline.make_gradient_decoder
    stroke_job.DECODERS = (*stroke_job.DECODERS, "secant-variant")
    for label, (kwargs, decodes) in VARIANTS.items():
        if args.only and not any(o in label for o in args.only):
            continue

        def make_decoder(name, model, *a, _kwargs=kwargs, **kw):
            if name != "secant-variant":
                return make(name, model, *a, **kw)
            linear = make("linear", model, *a, **kw)
            return SecantRefit(model.decode, linear, **_kwargs)

        pipeline.make_gradient_decoder = make_decoder
        setting = SynthesisSetting("gradop+", label, decoder="secant-variant")
        s, _ = score_setting(
            model, classifier, plan, scenes, setting, refs["reference_features"], refs["texture_reference"]
        )
        change = 100 * (s["faithfulness_mse"] / FULL_STROKE_MSE - 1)
        print(
            f"{label:46s} {decodes:4} decodes  stroke MSE {s['faithfulness_mse']:.5f} "
            f"({change:+.1f} % vs full)  FD {s['realism_fd']:.2f}  texture FD {s['texture_fd']:.2f}  "
            f"{s['seconds_per_scene']:.2f} s/scene",
            flush=True,
        )


if __name__ == "__main__":
    main()
