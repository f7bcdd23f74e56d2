"""Train the lab model from scratch on the procedural world and write a diffusers pipeline folder.

    python -m lib_guided.lab.train --out DIR --seed 0 [--vae-steps N --unet-steps M --threads T --quick]
    python -m lib_guided.lab.train --out DIR --vae-from lib_guided/lab/model \
        --init-from lib_guided/lab/model --resume STATE_DIR --unet-steps 14000 --lr 3e-4 --min-snr-gamma 5

Stages: generate scenes -> train the VAE -> measure its scaling factor (1 / std of the latents) ->
cache latents -> train text encoder + UNet jointly. The folder is rewritten at every checkpoint, so
an interrupted run still leaves a loadable (if undertrained) model. ``DIR/train_log.txt`` has the
losses and ``DIR/lab_training.json`` the settings and measurements of the run.
"""

from __future__ import annotations

import argparse
import os


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="pipeline folder to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vae-steps", type=int)
    p.add_argument("--unet-steps", type=int)
    p.add_argument("--scenes", type=int, help="training scenes (latents are cached for all of them)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="tiny smoke run: minutes, not a usable model")
    p.add_argument("--vae-from", help="pipeline folder whose trained VAE to reuse (skips VAE training)")
    p.add_argument("--checkpoint-every", type=int, help="UNet steps between checkpoints")
    p.add_argument("--init-from", help="pipeline folder whose UNet and text encoder to start from")
    p.add_argument(
        "--resume",
        help="training-state folder (kept outside the shipped model): loaded when it "
        "holds a state, written at every checkpoint",
    )
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate (warmup, then cosine to 0.1x)")
    p.add_argument("--warmup", type=int, help="warmup steps (default min(500, steps/10))")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--min-snr-gamma", type=float, help="min-SNR loss weighting (paper: 5); off if unset")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=85.0,
        help="wall-clock budget: each stage cuts its steps short (keeping what it has) when its "
        "share is spent",
    )
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    # libgomp reads this when torch loads. Its default long spin-wait makes 2 threads ~10x slower
    # whenever another process competes for the 2 cores; a short spin costs little on an idle machine.
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")
    from lib_guided.lab.training_run import run

    run(args)


if __name__ == "__main__":
    main()
