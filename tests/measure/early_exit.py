"""AIDI-A's early exit on the lab (the full plan's 12 inversion scenes): PSNR and model evaluations per
step at each residual tolerance, against the fixed 5-iteration result, at 10 and 20 steps.

    python tests/measure/early_exit.py [--scenes 12] [--tols 3e-2 1e-2 3e-3 1e-3]
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from lib_guided.adapters.diffusers_model import load_model  # noqa: E402
from lib_guided.lab import inversion_eval  # noqa: E402
from lib_guided.lab.eval_scenes import eval_scenes  # noqa: E402
from lib_guided.lab.report_plan import EARLY_EXIT_REFERENCE_ITERATIONS, FULL  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenes", type=int, default=FULL.inversion_scenes)
    parser.add_argument("--tols", type=float, nargs="+", default=[3e-2, 1e-2, 3e-3, 1e-3])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, scenes = load_model(None), eval_scenes(args.scenes)
    reference = {"tol": 1e-12, "max_iter": EARLY_EXIT_REFERENCE_ITERATIONS}
    for setting in (reference, *({"tol": t, "max_iter": 10} for t in args.tols)):
        measured = inversion_eval.measure(model, scenes, ["aidi-a"], args.steps, **setting)
        for row in measured["inversion"]:
            label = "5 iterations" if setting is reference else f"tol {setting['tol']:g}"
            print(
                f"{label:13s} {row['steps']:3d} steps: PSNR {row['psnr']:.3f} dB, "
                f"{row['model_evals_per_step']:.2f} evaluations per step",
                flush=True,
            )


if __name__ == "__main__":
    main()
