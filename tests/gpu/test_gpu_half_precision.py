"""Half precision on a CUDA GPU with real-size (random-weight) SD 1.5 and SDXL UNet/VAE.

Skipped without CUDA (CI has none); ``tests/gpu/run.sh`` runs it with the GPU benchmark. Each case runs
one GradOP phase (N = 12) under ``torch.autocast("cuda", float16)``, as the WebUI samples, with the VAE
in float16 and in float32, and compares the stroke-loss reduction; figures go to ``$GPU_OUT/half.json``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import torch

from lib_guided.gradop.decoders.factory import make_gradient_decoder
from lib_guided.gradop.optimise import optimise_latent
from lib_guided.strokes.painting import BlurPainting, stroke_loss

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (tests/gpu/run.sh)")

RESULTS: list[dict] = []


def _target(size: int, device) -> torch.Tensor:
    target = torch.empty(1, 3, size, size, device=device)
    target[..., : size // 2] = torch.tensor([0.85, 0.2, 0.2], device=device).view(1, 3, 1, 1)
    target[..., size // 2 :] = torch.tensor([0.2, 0.3, 0.8], device=device).view(1, 3, 1, 1)
    return target


@pytest.fixture(scope="module", params=["sd15", "sdxl"])
def models(request):
    from lib_guided.bench.models import build_bench_model

    half = build_bench_model(request.param, "cuda", torch.float16)
    full = build_bench_model(request.param, "cuda", torch.float32)
    yield request.param, half, full
    del half, full
    torch.cuda.empty_cache()


def _phase(model, decoder_name: str, size: int, judge) -> dict:
    gen = torch.Generator(device="cuda").manual_seed(0)
    latent = torch.randn(1, 4, size // 8, size // 8, generator=gen, device="cuda")
    target = _target(size, "cuda")
    decoder = make_gradient_decoder(decoder_name, model, fit_latent_size=(32, 32))
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        w, _, _ = optimise_latent(latent, target, decoder, BlurPainting(), 12, 0.1)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    with torch.no_grad():
        before = float(stroke_loss(BlurPainting(), judge.decode(latent).clamp(0, 1), target))
        after = float(stroke_loss(BlurPainting(), judge.decode(w).clamp(0, 1), target))
    return {
        "finite": bool(torch.isfinite(w).all()),
        "reduction": (before - after) / before,
        "seconds": round(seconds, 3),
        "peak_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
    }


@pytest.mark.parametrize("size", [512, 1024])
@pytest.mark.parametrize("decoder", ["full", "linear-anchored"])
def test_gradop_phase_in_float16_lowers_the_loss_like_float32(models, size, decoder):
    arch, half, full = models
    ref = _phase(full, decoder, size, full)
    got = _phase(half, decoder, size, full)
    row = {
        "arch": arch,
        "size": size,
        "decoder": decoder,
        "float32": ref,
        "float16": got,
        "gpu": torch.cuda.get_device_name(),
    }
    RESULTS.append(row)
    out = Path(os.environ.get("GPU_OUT", "docs/bench/gpu"))
    out.mkdir(parents=True, exist_ok=True)
    (out / "half.json").write_text(json.dumps(RESULTS, indent=2), encoding="utf-8")
    assert got["finite"] and ref["finite"]
    assert ref["reduction"] > 0.0
    assert abs(got["reduction"] - ref["reduction"]) <= 0.1 * ref["reduction"]
