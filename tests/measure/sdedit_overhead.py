"""Per-call overhead of our img2img (SDEdit) and plain txt2img against diffusers' pipelines, same UNet calls.

    python tests/measure/sdedit_overhead.py [SIZE] [STEPS] [REPEATS]

Both run the tests' tiny SD-like model (seeded random weights, tests/tiny_models.py) with DDIM and
batched CFG; a forward hook counts UNet calls and the time spent inside them. Prints seconds, UNet
calls, and the time outside the UNet per call for each path (median of REPEATS).
"""

import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from lib_guided.gradop.optimise import GradOPSettings  # noqa: E402
from lib_guided.pipeline import generate  # noqa: E402
from tests.tiny_models import build_tiny_model  # noqa: E402

PROMPT = "a photo of a red barn by a lake"


class UNetClock:
    def __init__(self, unet):
        self.calls, self.inside, self._start = 0, 0.0, 0.0
        unet.register_forward_pre_hook(self._pre)
        unet.register_forward_hook(self._post)

    def _pre(self, *_):
        self._start = time.perf_counter()

    def _post(self, *_):
        self.calls += 1
        self.inside += time.perf_counter() - self._start

    def reset(self):
        self.calls, self.inside = 0, 0.0


def timed(run, clock, repeats):
    rows = []
    for _ in range(repeats):
        clock.reset()
        start = time.perf_counter()
        run()
        total = time.perf_counter() - start
        rows.append((total, clock.calls, (total - clock.inside) / max(clock.calls, 1)))
    total = statistics.median(r[0] for r in rows)
    outside = statistics.median(r[2] for r in rows)
    return total, rows[0][1], outside


def main() -> None:
    size = int(sys.argv[1]) if len(sys.argv) > 1 else 128
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    repeats = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    torch.set_num_threads(1)
    from diffusers import DDIMScheduler, StableDiffusionImg2ImgPipeline, StableDiffusionPipeline

    ours = build_tiny_model(Path(tempfile.mkdtemp()), seed=0)
    scheduler = DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    # the very same modules: only the sampling code around the UNet differs
    txt = StableDiffusionPipeline(
        vae=ours.vae,
        text_encoder=ours.text_encoder,
        tokenizer=ours.tokenizer,
        unet=ours.unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    txt.set_progress_bar_config(disable=True)
    img = StableDiffusionImg2ImgPipeline(**txt.components)
    img.set_progress_bar_config(disable=True)
    painting = np.zeros((size, size, 3), np.uint8)
    painting[: size // 2] = (90, 140, 220)
    painting[size // 2 :] = (60, 150, 60)
    strokes = Image.fromarray(painting)
    ours_clock = theirs_clock = UNetClock(ours.unet)
    common = {"width": size, "height": size, "steps": steps, "cfg": 7.5}
    strength = 0.8
    cases = [
        ("txt2img ours", lambda: generate(ours, PROMPT, method="text", **common), ours_clock),
        (
            "txt2img diffusers",
            lambda: txt(
                PROMPT,
                height=size,
                width=size,
                num_inference_steps=steps,
                guidance_scale=7.5,
                output_type="pt",
            ),
            theirs_clock,
        ),
        (
            "img2img ours",
            lambda: generate(
                ours,
                PROMPT,
                strokes=strokes,
                method="sdedit",
                gradop=GradOPSettings(strength=strength),
                **common,
            ),
            ours_clock,
        ),
        (
            "img2img diffusers",
            lambda: img(
                PROMPT,
                image=strokes,
                strength=strength,
                num_inference_steps=steps,
                guidance_scale=7.5,
                output_type="pt",
            ),
            theirs_clock,
        ),
    ]
    print(
        f"tiny SD model, {size}x{size}, {steps} DDIM steps, CFG 7.5, img2img strength {strength}, "
        f"median of {repeats}, {torch.get_num_threads()} thread"
    )
    print(f"{'case':20s} {'seconds':>8s} {'UNet calls':>10s} {'outside UNet / call (ms)':>26s}")
    for name, run, clock in cases:
        with torch.no_grad():
            run()  # warm-up
            total, calls, outside = timed(run, clock, repeats)
        print(f"{name:20s} {total:8.3f} {calls:10d} {1000 * outside:26.2f}", flush=True)


if __name__ == "__main__":
    main()
