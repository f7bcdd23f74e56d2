"""The benchmark's cases: what each one runs, set up once and then called once per timed repeat.

A case is prepared (decoder fit, image encode: not timed), then ``run()`` is timed and ``summarise``
turns its result into the row's counts (model evaluations, steps, stroke loss, time inside the model).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from lib_guided.gradop.decoders.factory import (
    LinearDecoderCache,
    fit_model_linear_decoder,
    make_gradient_decoder,
)
from lib_guided.gradop.optimise import GradOPSettings
from lib_guided.inversion.invert import InversionSettings, invert
from lib_guided.pipeline import generate
from lib_guided.strokes.painting import BlurPainting, stroke_loss

PROMPT = "a photo of a red barn by a lake under a blue sky"
CFG = 7.5
SDEDIT_STRENGTH = 0.8
KINDS = ("txt2img", "gradop+", "img2img", "fit", "inversion")
# once per checkpoint (kept for the session): the least-squares fit of the linear latent -> RGB map
FIT_CASE = "linear decoder fit (once per checkpoint)"


@dataclass(frozen=True)
class CaseSpec:
    case: str  # the row's name, e.g. "gradop+ linear" or "inversion aidi-a 20"
    kind: str  # one of KINDS
    size: int  # square image side in pixels
    steps: int
    decoder: str | None = None
    solver: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def case_specs(
    sizes: Sequence[int],
    steps: int | Sequence[int],
    inversion_steps: Sequence[int],
    decoders: Sequence[str],
    solvers: Sequence[str],
) -> list[CaseSpec]:
    """Every size's cases: at each generation step count the plain txt2img baseline first, then GradOP+
    per decoder and img2img; the linear decoder's one-time fit in its own row; then the inversions."""
    step_counts = [steps] if isinstance(steps, int) else list(steps)
    specs = []
    for size in sizes:
        for n in step_counts:
            specs.append(CaseSpec("txt2img", "txt2img", size, n))
            specs.extend(CaseSpec(f"gradop+ {d}", "gradop+", size, n, decoder=d) for d in decoders)
            specs.append(CaseSpec(f"img2img sdedit {SDEDIT_STRENGTH}", "img2img", size, n))
        if any(d.startswith("linear") for d in decoders):
            specs.append(CaseSpec(FIT_CASE, "fit", size, 0))
        for n in inversion_steps:
            specs.extend(CaseSpec(f"inversion {s} {n}", "inversion", size, n, solver=s) for s in solvers)
    return specs


def bench_strokes(size: int) -> np.ndarray:
    """A three-colour layout (sky, grass, red barn) as an RGB uint8 painting."""
    rgb = np.empty((size, size, 3), np.uint8)
    rgb[: size // 2] = (90, 140, 220)
    rgb[size // 2 :] = (60, 150, 60)
    yy, xx = np.mgrid[:size, :size]
    barn = (np.abs(xx - size * 0.4) < size * 0.15) & (np.abs(yy - size * 0.55) < size * 0.12)
    rgb[barn] = (200, 40, 40)
    return rgb


def strokes_tensor(size: int) -> torch.Tensor:
    return torch.from_numpy(bench_strokes(size)).permute(2, 0, 1)[None].float() / 255.0


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def timed_model_calls(model, device: torch.device) -> Iterator[list[float]]:
    """Seconds spent inside ``model.eps`` (synchronised on CUDA so the time lands on the right side)."""
    spent = [0.0]
    original = model.eps

    def eps(*args, **kwargs):
        synchronize(device)
        start = time.perf_counter()
        out = original(*args, **kwargs)
        synchronize(device)
        spent[0] += time.perf_counter() - start
        return out

    model.eps = eps  # an instance attribute shadows the method for this case only
    try:
        yield spent
    finally:
        del model.eps


@dataclass
class PreparedCase:
    run: Callable[[], Any]
    summarise: Callable[[Any], dict]
    setup_seconds: float = 0.0


class CaseRunner:
    """Prepares the cases on one model; the linear decoder is fitted once per runner and reused."""

    def __init__(
        self,
        model,
        device: torch.device,
        tol: float = InversionSettings.tol,
        max_iter: int = InversionSettings.max_iter,
        gradop: GradOPSettings | None = None,
    ) -> None:
        self.model, self.device = model, torch.device(device)
        self.tol, self.max_iter = tol, max_iter
        self.gradop = gradop or GradOPSettings()  # the GradOP+ rows' K, N and lr
        self.decoder_cache = LinearDecoderCache()
        self.autocast = model.dtype if model.dtype in (torch.float16, torch.bfloat16) else None

    def prepare(self, spec: CaseSpec) -> PreparedCase:
        start = time.perf_counter()
        prepared = getattr(self, f"_prepare_{spec.kind.replace('+', '_plus')}")(spec)
        synchronize(self.device)
        prepared.setup_seconds = time.perf_counter() - start
        return prepared

    def _generation(self, spec: CaseSpec, **kwargs) -> PreparedCase:
        target = strokes_tensor(spec.size)
        painting = BlurPainting()

        def run():
            with torch.no_grad():
                return generate(
                    self.model, PROMPT, width=spec.size, height=spec.size, steps=spec.steps, cfg=CFG, **kwargs
                )

        def summarise(result) -> dict:
            with torch.no_grad():
                mse = float(stroke_loss(painting, result.images.float().cpu(), target))
            return {"model_evals": result.model_evals, "steps": spec.steps, "stroke_mse": mse}

        return PreparedCase(run, summarise)

    def _prepare_txt2img(self, spec: CaseSpec) -> PreparedCase:
        return self._generation(spec, method="text")

    def _prepare_gradop_plus(self, spec: CaseSpec) -> PreparedCase:
        decoder = make_gradient_decoder(
            spec.decoder,
            self.model,
            self.decoder_cache,
            cache_key=getattr(self.model, "arch", None),
            autocast_dtype=self.autocast,
        )
        return self._generation(
            spec, method="gradop+", strokes=bench_strokes(spec.size), decoder=decoder, gradop=self.gradop
        )

    def _prepare_img2img(self, spec: CaseSpec) -> PreparedCase:
        settings = GradOPSettings(strength=SDEDIT_STRENGTH)
        return self._generation(spec, method="sdedit", strokes=bench_strokes(spec.size), gradop=settings)

    def _prepare_fit(self, spec: CaseSpec) -> PreparedCase:
        def run():
            with torch.no_grad():
                return fit_model_linear_decoder(self.model)  # the size make_gradient_decoder fits at

        return PreparedCase(run, lambda _: {"model_evals": 0, "steps": 0})

    def _prepare_inversion(self, spec: CaseSpec) -> PreparedCase:
        model = self.model
        settings = InversionSettings(
            solver=spec.solver, steps=spec.steps, tol=self.tol, max_iter=self.max_iter
        )
        with torch.no_grad():
            latent = model.encode(strokes_tensor(spec.size).to(self.device, model.dtype)).float()
            cond, uncond = model.encode_prompt([PROMPT]), model.encode_prompt([""])

        def run():
            with timed_model_calls(model, self.device) as spent:
                start = time.perf_counter()
                result = invert(model, latent, None, cond, uncond, settings)
                synchronize(self.device)
                total = time.perf_counter() - start
            return result, spent[0], total

        def summarise(outcome) -> dict:
            result, inside, total = outcome
            return {
                "model_evals": result.evals_total,
                "steps": spec.steps,
                "model_evals_per_step": result.evals_total / spec.steps,
                "model_seconds": inside,
                "outside_model_share": max(0.0, total - inside) / total if total > 0 else float("nan"),
                "converged_fraction": sum(result.converged_per_step) / spec.steps,
            }

        return PreparedCase(run, summarise)
