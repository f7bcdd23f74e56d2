"""The lab training run (entry point: ``python -m lib_guided.lab.train``).

Stages: generate scenes -> train the VAE -> measure its scaling factor (1 / std of the latents) ->
cache latents -> train text encoder + UNet jointly. The folder is rewritten at every checkpoint, so
an interrupted run still leaves a loadable (if undertrained) model. ``DIR/train_log.txt`` has the
losses and ``DIR/lab_training.json`` the settings and measurements of the run.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from transformers.utils import logging as transformers_logging

from lib_guided.lab import model_configs as mc
from lib_guided.lab.pipeline_folder import save_component, save_pipeline, write_static_parts
from lib_guided.lab.run_log import RunLog
from lib_guided.lab.tokenizer import build_tokenizer
from lib_guided.lab.train_unet import encode_latents, state_lineage, tokenize, train_unet
from lib_guided.lab.train_vae import reconstruction_psnr, train_vae
from lib_guided.lab.world import make_dataset, vocabulary

# Sized from 1-thread step times on the 2-core machine: VAE ~0.17 s per 32x32-crop step and ~0.4 s per
# 64x64 step, UNet + text encoder ~0.42 s per batch-32 step; 2 threads are ~1.5x faster when idle.
FULL = {"scenes": 30_000, "eval_scenes": 256, "vae_steps": 3000, "unet_steps": 9000, "checkpoint_every": 1000}
QUICK = {"scenes": 1_500, "eval_scenes": 64, "vae_steps": 120, "unet_steps": 150, "checkpoint_every": 100}
VAE_SHARE = 0.22  # of --max-minutes, at most, for the VAE stage on a busy machine
HELD_OUT_OFFSET = 1  # held-out scenes come from dataset seed (seed + 1); scene seeds never overlap


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@torch.no_grad()
def latent_scaling_factor(latent_mean: torch.Tensor, latent_std: torch.Tensor, gen: torch.Generator) -> float:
    """1 / std of posterior samples, SD's recipe (0.18215 for SD 1.x) measured on this VAE."""
    sample = latent_mean + latent_std * torch.randn(latent_mean.shape, generator=gen)
    return float(1.0 / sample.std())


def run(args) -> dict:
    """Run every stage for the parsed command line ``args`` (see train.py); returns the run report."""
    plan = dict(QUICK if args.quick else FULL)
    for key in ("vae_steps", "unet_steps", "scenes", "checkpoint_every"):
        if getattr(args, key) is not None:
            plan[key] = getattr(args, key)
    torch.set_num_threads(args.threads)
    device = torch.device(getattr(args, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu"))
    transformers_logging.disable_progress_bar()  # no tqdm bars from save_pretrained in the log
    seed_everything(args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = RunLog(out / "train_log.txt")
    report = {
        "seed": args.seed,
        "threads": args.threads,
        "plan": plan,
        "train_dataset_seed": args.seed,
        "held_out_dataset_seed": args.seed + HELD_OUT_OFFSET,
        "device": _device_name(device),
        "recipe": {
            "lr": args.lr,
            "batch": args.batch,
            "min_snr_gamma": args.min_snr_gamma,
            "init_from": str(args.init_from) if args.init_from else None,
        },
    }
    log(f"plan {plan} seed {args.seed} threads {args.threads}")

    t0 = time.time()
    data = make_dataset(plan["scenes"], args.seed)
    held_out = make_dataset(plan["eval_scenes"], args.seed + HELD_OUT_OFFSET)["images"]
    report["data_seconds"] = round(time.time() - t0, 1)
    log(f"generated {plan['scenes']} + {plan['eval_scenes']} scenes in {report['data_seconds']} s")
    write_static_parts(out)
    tokenizer = build_tokenizer(out / "tokenizer", vocabulary())

    gen = torch.Generator().manual_seed(args.seed)
    t0 = time.time()
    if args.vae_from:
        # a VAE trained by an earlier run of this script: only the diffusion stage runs again
        from diffusers import AutoencoderKL

        vae = AutoencoderKL.from_pretrained(args.vae_from, subfolder="vae")
        report["vae_from"] = str(args.vae_from)
        log(f"VAE loaded from {args.vae_from}")
    else:
        vae = mc.build_vae()
        train_vae(
            vae,
            data["images"],
            plan["vae_steps"],
            log,
            gen,
            checkpoint=lambda m: save_component(out, "vae", m),
            checkpoint_every=plan["checkpoint_every"],
            budget_seconds=VAE_SHARE * 60.0 * args.max_minutes,
        )
        report["vae_seconds"] = round(time.time() - t0, 1)
        report["vae_seconds_per_step"] = round(report["vae_seconds"] / max(plan["vae_steps"], 1), 3)
    report["params"] = {"vae": mc.parameter_count(vae)}
    vae.requires_grad_(False).to(device)
    report["vae_psnr_held_out"] = round(reconstruction_psnr(vae, held_out), 2)
    log(f"VAE held-out PSNR {report['vae_psnr_held_out']} dB")

    t0 = time.time()
    latent_mean, latent_std = encode_latents(vae, data["images"])
    if args.vae_from:
        scaling = float(vae.config.scaling_factor)  # a UNet trained on this VAE expects its latent scale
    else:
        scaling = latent_scaling_factor(latent_mean, latent_std, gen)
        vae.register_to_config(scaling_factor=scaling)
    save_component(out, "vae", vae.cpu())
    report["scaling_factor"] = scaling
    report["latent_stats"] = {
        "mean": float(latent_mean.mean()),
        "std": float(latent_mean.std()),
        "posterior_std": float(latent_std.mean()),
    }
    log(
        f"encoded latents {tuple(latent_mean.shape)} in {time.time() - t0:.1f} s; "
        f"scaling factor {scaling:.5f}; stats {report['latent_stats']}"
    )

    ids = tokenize(tokenizer, data["captions"])
    empty_ids = tokenize(tokenizer, [""])[0]
    if args.init_from:
        # continue from a trained pipeline's (EMA) weights, e.g. the shipped model
        from diffusers import UNet2DConditionModel
        from transformers import CLIPTextModel

        text_encoder = CLIPTextModel.from_pretrained(args.init_from, subfolder="text_encoder")
        unet = UNet2DConditionModel.from_pretrained(args.init_from, subfolder="unet")
        # a resumed run keeps the lineage it started with (the init folder may have been replaced since)
        lineage = state_lineage(args.resume)
        if lineage is None:
            steps, seconds = _trained_so_far(Path(args.init_from))
            lineage = {"init_unet_steps": steps, "init_unet_seconds": seconds}
        report.update(lineage)
        log(
            f"UNet and text encoder initialised from {args.init_from} "
            f"({report['init_unet_steps']} steps, {report['init_unet_seconds']:.0f} s of training)"
        )
    else:
        text_encoder = mc.build_text_encoder(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id)
        unet = mc.build_unet()
    text_encoder.to(device)
    unet.to(device)
    report["params"].update(unet=mc.parameter_count(unet), text_encoder=mc.parameter_count(text_encoder))
    log(f"parameters {report['params']}")

    def checkpoint(ema_models, step, seconds):
        save_pipeline(out, unet=ema_models["unet"], text_encoder=ema_models["text_encoder"])
        log(f"checkpoint at unet step {step} written to {out}")
        # the seconds too: a run stopped after a checkpoint ships it with its cost (model_quality reads it)
        _write_report(out, {**report, "unet_steps_done": step, "unet_seconds": round(seconds, 1)})

    t0 = time.time()
    ema, report["unet_steps_done"], report["unet_seconds"] = train_unet(
        unet,
        text_encoder,
        mc.build_scheduler("ddpm"),
        latent_mean,
        latent_std,
        ids,
        empty_ids,
        scaling,
        plan["unet_steps"],
        log,
        gen,
        checkpoint=checkpoint,
        checkpoint_every=plan["checkpoint_every"],
        deadline=log.start + 60.0 * args.max_minutes - 60.0,  # a minute left for the final save
        batch=args.batch,
        lr=args.lr,
        min_snr_gamma=args.min_snr_gamma,
        state_dir=args.resume,
        warmup=args.warmup,
        lineage={k: report[k] for k in ("init_unet_steps", "init_unet_seconds") if k in report},
    )
    report["unet_seconds"] = round(report["unet_seconds"], 1)
    report["unet_seconds_per_step"] = round(report["unet_seconds"] / max(report["unet_steps_done"], 1), 3)
    save_pipeline(out, unet=ema["unet"], text_encoder=ema["text_encoder"])
    report["total_seconds"] = round(log.elapsed(), 1)
    _write_report(out, report)
    log(f"done: {report}")
    return report


def _trained_so_far(folder: Path) -> tuple[int, float]:
    """UNet steps and seconds behind a pipeline folder, counting the runs it was initialised from."""
    record = folder / "lab_training.json"
    if not record.is_file():
        return 0, 0.0
    r = json.loads(record.read_text(encoding="utf-8"))
    return (
        int(r.get("init_unet_steps", 0)) + int(r.get("unet_steps_done", 0)),
        float(r.get("init_unet_seconds", 0.0)) + float(r.get("unet_seconds", 0.0)),
    )


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def _write_report(out: Path, report: dict) -> None:
    (out / "lab_training.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
