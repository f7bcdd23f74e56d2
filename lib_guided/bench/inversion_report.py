"""Measure inversion solvers on a model: model evaluations, iterations and reconstruction quality.

``python -m lib_guided.bench.inversion_report --model DIR --image FILE --prompt "what it shows"`` prints one
row per (solver, steps); the lab report and the benchmark reuse :func:`measure_inversion`.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Mapping, Sequence

import torch

from lib_guided.images import psnr
from lib_guided.inversion.editing import reconstruct
from lib_guided.inversion.invert import SOLVERS, InversionSettings, invert
from lib_guided.protocol import DiffusionModel


@torch.no_grad()
def measure_inversion(
    model: DiffusionModel,
    images: torch.Tensor,
    prompts: Sequence[str],
    solvers: Sequence[str] = SOLVERS,
    steps_list: Sequence[int] = (10, 20),
    image_metrics: Mapping[str, Callable[[torch.Tensor, torch.Tensor], float]] | None = None,
    **settings,
) -> dict:
    """Invert and reconstruct every image with every (solver, steps); averages over the images.

    ``image_metrics`` (name -> metric(reconstruction, image), e.g. SSIM) adds a column per metric to
    every row and its VAE round-trip value as ``vae_ceiling_<name>``.
    """
    image_metrics = dict(image_metrics or {})
    latents = model.encode(images)
    decoded = model.decode(latents).clamp(0, 1)
    ceiling = [psnr(decoded[i : i + 1], images[i : i + 1]) for i in range(len(images))]
    extra_ceilings = {
        f"vae_ceiling_{name}": _mean([fn(decoded[i : i + 1], images[i : i + 1]) for i in range(len(images))])
        for name, fn in image_metrics.items()
    }
    rows = []
    for steps in steps_list:
        for solver in solvers:
            config = InversionSettings(solver=solver, steps=steps, **settings)
            evals, iterations, scores, errors, converged = [], [], [], [], []
            extra: dict[str, list[float]] = {name: [] for name in image_metrics}
            for i, prompt in enumerate(prompts):
                cond, uncond = model.encode_prompt([prompt]), model.encode_prompt([""])
                result = invert(model, latents[i : i + 1], None, cond, uncond, config)
                back = reconstruct(model, result, cond, uncond, config.inversion_cfg)
                evals.append(result.evals_total / steps)
                iterations.append(sum(result.iterations_per_step) / steps)
                converged.append(sum(result.converged_per_step) / steps)
                errors.append(float(torch.mean((back - latents[i : i + 1]) ** 2)))
                decoded_back = model.decode(back).clamp(0, 1)
                scores.append(psnr(decoded_back, images[i : i + 1]))
                for name, fn in image_metrics.items():
                    extra[name].append(fn(decoded_back, images[i : i + 1]))
            rows.append(
                {
                    "solver": solver,
                    "steps": steps,
                    "model_evals_per_step": _mean(evals),
                    "model_evals": _mean(evals) * steps,
                    "iterations_per_step": _mean(iterations),
                    "converged_fraction": _mean(converged) if solver != "ddim" else math.nan,
                    "latent_mse": _mean(errors),
                    "psnr": _mean(scores),
                    **{name: _mean(values) for name, values in extra.items()},
                }
            )
    return {"vae_ceiling_psnr": _mean(ceiling), **extra_ceilings, "settings": settings, "inversion": rows}


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / max(len(values), 1))


def format_table(report: dict) -> str:
    lines = [
        f"VAE round-trip ceiling: {report['vae_ceiling_psnr']:.2f} dB PSNR",
        "| solver | steps | model evals / step | iterations / step | latent MSE | PSNR (dB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["inversion"]:
        lines.append(
            f"| {r['solver']} | {r['steps']} | {r['model_evals_per_step']:.2f} | "
            f"{r['iterations_per_step']:.2f} | {r['latent_mse']:.2e} | {r['psnr']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from lib_guided.adapters.diffusers_model import load_model
    from lib_guided.images import image_to_tensor

    parser = argparse.ArgumentParser(prog="python -m lib_guided.bench.inversion_report", description=__doc__)
    parser.add_argument("--model")
    parser.add_argument("--image", action="append", required=True)
    parser.add_argument("--prompt", action="append", required=True, help="one per --image")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--solvers", nargs="+", choices=SOLVERS, default=list(SOLVERS))
    parser.add_argument("--tol", type=float, default=InversionSettings.tol)
    parser.add_argument("--max-iter", type=int, default=InversionSettings.max_iter)
    parser.add_argument("--json", help="also write the report here")
    args = parser.parse_args(argv)
    if len(args.image) != len(args.prompt):
        parser.error("give one --prompt per --image")
    model = load_model(args.model)
    images = torch.cat([image_to_tensor(p) for p in args.image])
    report = measure_inversion(
        model, images, args.prompt, args.solvers, args.steps, tol=args.tol, max_iter=args.max_iter
    )
    print(format_table(report))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
