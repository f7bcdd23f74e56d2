"""Reconstruction PSNR and evaluations per step of DDIM and AIDI-A inversion on 8 lab scenes (10 steps),
with the old first guess (x_{t-1} as it is) and the current one (z_{t-1} at level t, then extrapolation).

    python tests/measure/first_guess.py
"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import lib_guided.inversion.invert as inv  # noqa: E402
from lib_guided.adapters.diffusers_model import load_model  # noqa: E402
from lib_guided.images import psnr  # noqa: E402
from lib_guided.inversion.editing import reconstruct  # noqa: E402
from lib_guided.lab.eval_scenes import eval_scenes, stack_images  # noqa: E402

torch.set_num_threads(1)
m = load_model(None)
scenes = eval_scenes(8)
orig = inv.first_guess
for label, guess in (("old x_low", lambda x, a, b, e=None: x), ("current", orig)):
    inv.first_guess = guess
    for solver, kw in (("ddim", {}), ("aidi-a", {"tol": 1e-3, "max_iter": 10})):
        ps, ev = [], []
        for sc in scenes:
            img = stack_images([sc])
            with torch.no_grad():
                cond, unc = m.encode_prompt([sc.caption]), m.encode_prompt([""])
                ceiling = psnr(m.decode(m.encode(img)).clamp(0, 1), img)
                st = inv.InversionSettings(solver=solver, steps=10, **kw)
                r = inv.invert(m, m.encode(img), None, cond, unc, st)
                rec = m.decode(reconstruct(m, r, cond, unc, 1.0)).clamp(0, 1)
            ps.append(psnr(rec, img))
            ev.append(r.evals_total / 10)
        print(
            f"{label:10s} {solver:7s} PSNR {sum(ps) / len(ps):.2f} dB (last scene's VAE ceiling "
            f"{ceiling:.2f}) evals/step {sum(ev) / len(ev):.2f}; scene 0: {ps[0]:.2f} dB",
            flush=True,
        )
