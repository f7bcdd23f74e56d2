"""``python -m lib_guided.lab COMMAND``: the quality lab's entry points.

report            measure the papers' claims on a lab model: DIR/report.json, report.md, plots
train-classifier  retrain the shipped judge (lib_guided/lab/classifier.safetensors) from its seed
train             train the lab diffusion model (same as ``python -m lib_guided.lab.train``)
"""

from __future__ import annotations

import argparse
import os
import sys


def _train_classifier(argv: list[str]) -> int:
    from pathlib import Path

    from lib_guided.lab.classifier import WEIGHTS

    parser = argparse.ArgumentParser(prog="python -m lib_guided.lab train-classifier")
    parser.add_argument("--out", default=str(WEIGHTS), help="safetensors file to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="the shipped weights were trained on 1")
    args = parser.parse_args(argv)
    import torch

    from lib_guided.lab.train_classifier import train_classifier

    torch.set_num_threads(args.threads)
    train_classifier(Path(args.out), args.seed)
    return 0


def _report(argv: list[str]) -> int:
    from lib_guided.lab.report import main

    return main(argv)


def _train(argv: list[str]) -> int:
    from lib_guided.lab.train import main

    main(argv)
    return 0


COMMANDS = {"report": _report, "train-classifier": _train_classifier, "train": _train}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    # libgomp's default long spin-wait is ~10x slower when another process shares the cores
    os.environ.setdefault("GOMP_SPINCOUNT", "1000")
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
