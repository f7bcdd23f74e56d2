"""``python -m lib_guided``: stroke-guided generation and AIDI editing from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from lib_guided.adapters.diffusers_model import load_model
from lib_guided.edit_job import EditSettings
from lib_guided.errors import GuidedInputError
from lib_guided.gradop.decoders.factory import DECODERS
from lib_guided.gradop.optimise import OPTIMISERS, TARGETS, GradOPSettings
from lib_guided.images import image_to_tensor, psnr, save_image
from lib_guided.inversion.invert import SOLVERS, InversionSettings
from lib_guided.palette_text import parse_palette_item
from lib_guided.pipeline import DEFAULT_CFG, DEFAULT_STEPS, METHODS, edit_image, generate
from lib_guided.regions.attention import REGION_MODES
from lib_guided.stroke_job import PAINTINGS, StrokeSettings
from lib_guided.strokes.io import load_strokes

_GRADOP, _STROKE, _INVERSION, _EDIT = GradOPSettings(), StrokeSettings(), InversionSettings(), EditSettings()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lib_guided", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="prompt + stroke painting + palette -> image")
    gen.add_argument("--model", help="diffusers folder (default: the shipped lab model)")
    gen.add_argument("--prompt", required=True)
    gen.add_argument("--negative-prompt", default="")
    gen.add_argument("--strokes", help="stroke painting (PNG/JPEG, RGBA: transparent = unpainted)")
    gen.add_argument(
        "--palette",
        action="append",
        default=[],
        metavar="COLOR=PHRASE[:WEIGHT]",
        help="bind a stroke colour to a phrase; repeat for several",
    )
    gen.add_argument("--method", choices=METHODS, default="gradop+")
    gen.add_argument("--width", type=int)
    gen.add_argument("--height", type=int)
    gen.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    gen.add_argument("--cfg", type=float, default=DEFAULT_CFG)
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--strength", type=float, default=_GRADOP.strength)
    gen.add_argument("--injection-steps", type=int, default=_GRADOP.injection_steps)
    gen.add_argument("--adam-steps", type=int, default=_GRADOP.adam_steps)
    gen.add_argument("--lr", type=float, default=_GRADOP.lr)
    gen.add_argument("--target", choices=TARGETS, default=_GRADOP.target)
    gen.add_argument("--optimiser", choices=OPTIMISERS, default=_GRADOP.optimiser)
    gen.add_argument("--painting", choices=PAINTINGS, default=_STROKE.painting)
    gen.add_argument("--blur-size", type=int, default=_STROKE.blur_size, help="blur kernel at 512 px (odd)")
    gen.add_argument(
        "--gradient-decoder",
        choices=DECODERS,
        default=_STROKE.decoder,
        help="decoder the stroke gradient goes through (the image always uses the full VAE)",
    )
    gen.add_argument("--region-weight", type=float, default=_STROKE.region_weight)
    gen.add_argument(
        "--region-mode",
        choices=REGION_MODES,
        default=_STROKE.region_mode,
        help="how a bound phrase is tied to its colour's region",
    )
    gen.add_argument("--colour-tolerance", type=float, default=_STROKE.colour_tolerance)
    gen.add_argument("--out", required=True)

    ed = sub.add_parser("edit", help="invert a real image (AIDI) and edit it with a new prompt")
    ed.add_argument("--model", help="diffusers folder (default: the shipped lab model)")
    ed.add_argument("--image", required=True)
    ed.add_argument("--source-prompt", required=True, help="what the image shows")
    ed.add_argument("--prompt", required=True, help="what it should show")
    ed.add_argument("--negative-prompt", default="")
    ed.add_argument("--solver", choices=SOLVERS, default=_INVERSION.solver)
    ed.add_argument("--steps", type=int, default=_INVERSION.steps)
    ed.add_argument("--inversion-cfg", type=float, default=_INVERSION.inversion_cfg)
    ed.add_argument("--edit-cfg", type=float, default=_EDIT.edit_cfg)
    ed.add_argument("--strength", type=float, default=1.0, help="how deep to invert (1 = to pure noise)")
    ed.add_argument("--tol", type=float, default=_INVERSION.tol)
    ed.add_argument("--max-iter", type=int, default=_INVERSION.max_iter)
    ed.add_argument("--window", type=int, default=_INVERSION.window)
    ed.add_argument(
        "--mask", help='blend mask image (white = edit here, black = keep), or "auto" to compute one'
    )
    ed.add_argument("--eta", type=float, default=_EDIT.eta)
    ed.add_argument(
        "--attention-injection",
        type=float,
        default=_EDIT.attention_injection,
        help="share of the steps the edit keeps the reconstruction's attention maps (0 = off)",
    )
    ed.add_argument("--seed", type=int, default=0)
    ed.add_argument("--report", action="store_true", help="print reconstruction PSNR and model evaluations")
    ed.add_argument("--out", required=True)
    return parser


def run_generate(args: argparse.Namespace) -> dict:
    # check the cheap inputs before the slow model load
    strokes = load_strokes(Path(args.strokes)) if args.strokes else None
    width = args.width or (strokes.width if strokes else 512)
    height = args.height or (strokes.height if strokes else 512)
    settings = GradOPSettings(
        strength=args.strength,
        injection_steps=args.injection_steps,
        adam_steps=args.adam_steps,
        lr=args.lr,
        target=args.target,
        optimiser=args.optimiser,
    )
    palette = [parse_palette_item(text, i) for i, text in enumerate(args.palette)]
    stroke_settings = StrokeSettings(
        painting=args.painting,
        blur_size=args.blur_size,
        decoder=args.gradient_decoder,
        region_weight=args.region_weight,
        colour_tolerance=args.colour_tolerance,
        region_mode=args.region_mode,
    )
    model = load_model(args.model)
    result = generate(
        model,
        args.prompt,
        strokes=strokes,
        palette=palette,
        method=args.method,
        negative_prompt=args.negative_prompt,
        width=width,
        height=height,
        steps=args.steps,
        cfg=args.cfg,
        seed=args.seed,
        gradop=settings,
        settings=stroke_settings,
    )
    save_image(result.images, args.out)
    return {"out": args.out, "prompt": result.prompt, "model_evals": result.model_evals}


def run_edit(args: argparse.Namespace) -> dict:
    model = load_model(args.model)
    image = image_to_tensor(args.image)
    settings = InversionSettings(
        solver=args.solver,
        steps=args.steps,
        inversion_cfg=args.inversion_cfg,
        tol=args.tol,
        max_iter=args.max_iter,
        window=args.window,
    )
    mask = "auto" if args.mask == "auto" else None
    if args.mask and mask is None:
        mask = image_to_tensor(args.mask).mean(dim=1, keepdim=True)
    result = edit_image(
        model,
        image,
        args.source_prompt,
        args.prompt,
        inversion=settings,
        edit_cfg=args.edit_cfg,
        strength=args.strength,
        negative_prompt=args.negative_prompt,
        mask=mask,
        eta=args.eta,
        attention_injection=args.attention_injection,
        seed=args.seed,
        with_reconstruction=args.report,
    )
    save_image(result.image, args.out)
    summary = {"out": args.out, "inversion_evals": result.inversion_evals, "edit_evals": result.edit_evals}
    if result.mask is not None and mask == "auto":
        summary["auto_mask_share"] = round(float(result.mask.mean()), 4)
    if args.report:
        steps = len(result.evals_per_step)
        summary.update(
            reconstruction_psnr=round(psnr(result.reconstruction, image), 3),
            vae_ceiling_psnr=round(psnr(model.decode(model.encode(image)).clamp(0, 1), image), 3),
            inversion_steps=steps,
            evals_per_inversion_step=round(result.inversion_evals / max(steps, 1), 3),
        )
    return summary


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        with torch.no_grad():
            summary = run_generate(args) if args.command == "generate" else run_edit(args)
    except (GuidedInputError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2))
    return 0
