"""Editing levers on the lab's full-plan edit scenes (24 scenes, AIDI-A, 10 steps, edit CFG 5 unless
told): the automatic blend mask against the object's own, and attention injection. Prints edit success,
background PSNR and, for the automatic mask, its IoU with the object's.

    python tests/measure/edit_levers.py [--thresholds 0.3 0.4 0.5 0.6] [--edit-cfgs 5]
        [--masks none object auto] [--injections 0]
"""

import argparse
import functools
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import lib_guided.edit_job as edit_job  # noqa: E402
from lib_guided.adapters.diffusers_model import load_model  # noqa: E402
from lib_guided.inversion.edit_mask import auto_edit_mask  # noqa: E402
from lib_guided.lab import editing_eval  # noqa: E402
from lib_guided.lab.classifier import load_classifier  # noqa: E402
from lib_guided.lab.eval_scenes import eval_scenes, stack_images  # noqa: E402


def _self_only(injected_edit, *args, **kwargs):
    return injected_edit(*args, **{**kwargs, "cross": False})


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.4, 0.5, 0.6])
    parser.add_argument("--edit-cfgs", type=float, nargs="+", default=[5.0])
    parser.add_argument("--masks", nargs="+", default=["none", "object", "auto"])
    parser.add_argument("--injections", type=float, nargs="+", default=[0.0])
    parser.add_argument(
        "--self-only", action="store_true", help="inject self-attention only, never cross-attention"
    )
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.self_only:
        edit_job.injected_edit = functools.partial(_self_only, edit_job.injected_edit)
    model, classifier = load_model(None), load_classifier()
    scenes = eval_scenes(args.scenes)
    tasks = editing_eval.tasks_for(scenes)
    originals = stack_images(scenes)
    truth = [
        F.max_pool2d(editing_eval.object_mask(s, t.index, editing_eval.MASK_MARGIN), 4)
        for s, t in zip(scenes, tasks, strict=True)
    ]
    masks: list[torch.Tensor] = []

    def recording(*a, threshold, **k):
        mask = auto_edit_mask(*a, threshold=threshold, **k)
        masks.append(mask)
        return mask

    rows = [
        (kind, threshold, cfg, injection)
        for injection in args.injections
        for cfg in args.edit_cfgs
        for kind in args.masks
        for threshold in (args.thresholds if kind == "auto" else [None])
    ]
    for kind, threshold, cfg, injection in rows:
        masks.clear()
        if threshold is not None:
            edit_job.auto_edit_mask = functools.partial(recording, threshold=threshold)
        setting = editing_eval.EditSetting("aidi-a", 10, kind, injection)
        edited = editing_eval.run_edits(model, scenes, setting, edit_cfg=cfg, seed=1000)
        scores = editing_eval.edit_scores(classifier, edited, originals, scenes, tasks)
        line = (
            f"injection {injection:g} edit CFG {cfg:g} {kind:6s} "
            f"{'' if threshold is None else f'threshold {threshold}':14s} "
            f"success {float(scores['success'].float().mean()):.3f} "
            f"background PSNR {float(scores['background_psnr'].mean()):.2f} dB"
        )
        if masks:
            iou = [
                float((m * g).sum() / ((m + g) > 0).float().sum().clamp_min(1))
                for m, g in zip(masks, truth, strict=True)
            ]
            cover = [float(m.mean()) for m in masks]
            line += f" IoU {sum(iou) / len(iou):.3f} covers {sum(cover) / len(cover):.3f}"
        print(line, flush=True)
    print(f"object masks cover {sum(float(g.mean()) for g in truth) / len(truth):.3f} of the latent")


if __name__ == "__main__":
    main()
