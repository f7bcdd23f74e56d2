"""Speed and memory of GradOP+ (per gradient decoder), img2img and AIDI inversion against plain txt2img.

    python -m lib_guided.bench --out DIR [--arch sd15|sdxl|tiny] [--device cpu|cuda] [--quick]
                               [--sizes 256 512] [--repeats N] [--steps 50]

writes ``DIR/bench.json`` (machine info, settings, one row per case) and ``DIR/bench.md`` (a table).
Each case is timed ``--repeats`` times after ``--warmup`` untimed runs; the row holds the median time
and the largest peak memory (see ``bench_memory``). On the CPU each case runs in a fresh process by
default (``--no-isolate`` to share one), so one case's allocator state cannot shift another's memory.
The models have random weights (``bench_models``): shapes set the cost, weights do not.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from lib_guided.bench.cases import CFG, KINDS, CaseRunner, CaseSpec, case_specs, synchronize
from lib_guided.bench.memory import PeakMemory
from lib_guided.bench.models import ARCHS, build_bench_model
from lib_guided.bench.report import add_ratios, machine_info, write_report
from lib_guided.gradop.decoders.factory import DECODERS
from lib_guided.gradop.optimise import OPTIMISERS, GradOPSettings
from lib_guided.inversion.invert import SOLVERS, InversionSettings
from lib_guided.stroke_job import StrokeSettings

DEFAULT_SIZES = {
    ("tiny", "cpu"): [64],
    ("tiny", "cuda"): [64],
    ("sd15", "cpu"): [256],
    ("sd15", "cuda"): [512],
    ("sdxl", "cuda"): [1024],
}
WORKER_MARK = "BENCH_ROW "


def measure(runner: CaseRunner, spec: CaseSpec, repeats: int, warmup: int) -> dict:
    """Time ``repeats`` runs of one case (median) and keep their largest peak memory."""
    device = runner.device
    prepared = runner.prepare(spec)
    for _ in range(warmup):
        prepared.run()
    memory = PeakMemory(device)
    seconds, peaks, extras, summaries = [], [], [], []
    for _ in range(repeats):
        gc.collect()
        memory.start()
        start = time.perf_counter()
        outcome = prepared.run()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
        peak, extra = memory.stop()
        peaks.append(peak)
        extras.append(extra)
        summaries.append(prepared.summarise(outcome))
        del outcome
    row = {
        "case": spec.case,
        "device": device.type,
        "resolution": spec.size,
        "seconds": statistics.median(seconds),
        "seconds_all": seconds,
        "peak_memory_mb": max(peaks),
        "peak_extra_memory_mb": max(extras),
        "setup_seconds": prepared.setup_seconds,
        "memory_method": memory.method,
        **{k: v for k, v in spec.to_dict().items() if k in ("decoder", "solver") and v is not None},
    }
    for key in summaries[0]:
        values = [s[key] for s in summaries]
        exact = all(isinstance(v, int) for v in values)  # counts stay integers
        row[key] = statistics.median_low(values) if exact else statistics.median(values)
    return row


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lib_guided.bench",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="folder for bench.json and bench.md")
    parser.add_argument("--arch", choices=ARCHS, default="sd15")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        help="model dtype (default: float16 on cuda, float32 on cpu)",
    )
    parser.add_argument("--quick", action="store_true", help="10 steps, 1 timed run, cases in one process")
    parser.add_argument("--sizes", type=int, nargs="+", help="square image sides (default depends on arch)")
    parser.add_argument(
        "--steps",
        type=int,
        nargs="+",
        help="generation step counts, each a set of rows (default 20 50, quick 10)",
    )
    parser.add_argument("--inversion-steps", type=int, nargs="+", default=[10, 20])
    parser.add_argument("--repeats", type=int, help="timed runs per case (default 3, quick 1)")
    parser.add_argument("--warmup", type=int, help="untimed runs per case (default 1 on cuda, 0 on cpu)")
    parser.add_argument(
        "--decoders",
        nargs="+",
        choices=[d for d in DECODERS if d != "tiny"],
        default=["full", "full-checkpointed", "linear", "linear-anchored", "linear-anchored-half"],
    )
    parser.add_argument(
        "--adam-steps", type=int, default=GradOPSettings.adam_steps, help="GradOP+ rows' Adam steps N"
    )
    parser.add_argument("--lr", type=float, default=GradOPSettings.lr, help="GradOP+ rows' step size")
    parser.add_argument("--optimiser", choices=OPTIMISERS, default=GradOPSettings.optimiser)
    parser.add_argument("--solvers", nargs="+", choices=SOLVERS, default=list(SOLVERS))
    parser.add_argument(
        "--kinds",
        nargs="+",
        choices=KINDS,
        default=list(KINDS),
        help="which kinds of case to time (txt2img, the ratios' baseline, always runs)",
    )
    parser.add_argument("--tol", type=float, default=InversionSettings.tol)
    parser.add_argument("--max-iter", type=int, default=InversionSettings.max_iter)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument(
        "--isolate",
        action=argparse.BooleanOptionalAction,
        help="one process per case (default: on for cpu without --quick)",
    )
    parser.add_argument("--seed", type=int, default=0, help="weight seed of the random model")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: run one case, print its row
    return parser


def resolve_settings(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict:
    if args.arch == "sdxl" and args.device != "cuda":
        parser.error("--arch sdxl runs at 1024x1024 and is for --device cuda only")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    sizes = args.sizes or DEFAULT_SIZES[(args.arch, args.device)]
    if any(s <= 0 or s % 8 for s in sizes):
        parser.error("--sizes: each must be a positive multiple of 8")
    return {
        "arch": args.arch,
        "device": args.device,
        "dtype": args.dtype or ("float16" if args.device == "cuda" else "float32"),
        "sizes": sizes,
        "steps": args.steps or ([10] if args.quick else [20, 50]),
        "inversion_steps": args.inversion_steps,
        "repeats": args.repeats or (1 if args.quick else 3),
        "warmup": args.warmup if args.warmup is not None else (1 if args.device == "cuda" else 0),
        "decoders": args.decoders,
        "adam_steps": args.adam_steps,
        "lr": args.lr,
        "optimiser": args.optimiser,
        "solvers": args.solvers,
        "kinds": ["txt2img", *(k for k in args.kinds if k != "txt2img")],
        "tol": args.tol,
        "max_iter": args.max_iter,
        "threads": args.threads,
        "isolate": args.isolate if args.isolate is not None else (args.device == "cpu" and not args.quick),
        "seed": args.seed,
        "cfg": CFG,
        "quick": args.quick,
    }


def _runner(settings: dict) -> CaseRunner:
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])
    torch.set_flush_denormal(True)  # random weights must not hit the CPU's slow denormal path
    model = build_bench_model(
        settings["arch"], settings["device"], getattr(torch, settings["dtype"]), settings["seed"]
    )
    gradop = GradOPSettings(
        adam_steps=settings["adam_steps"], lr=settings["lr"], optimiser=settings["optimiser"]
    )
    return CaseRunner(model, torch.device(settings["device"]), settings["tol"], settings["max_iter"], gradop)


def run_worker(payload: str) -> int:
    job = json.loads(payload)
    settings, spec = job["settings"], CaseSpec(**job["spec"])
    row = measure(_runner(settings), spec, settings["repeats"], settings["warmup"])
    print(WORKER_MARK + json.dumps(row), flush=True)
    return 0


def run_isolated(settings: dict, spec: CaseSpec) -> dict:
    payload = json.dumps({"settings": settings, "spec": spec.to_dict()})
    done = subprocess.run(
        [sys.executable, "-m", "lib_guided.bench", "--out", "-", "--worker", payload],
        capture_output=True,
        text=True,
    )
    rows = [line[len(WORKER_MARK) :] for line in done.stdout.splitlines() if line.startswith(WORKER_MARK)]
    if done.returncode != 0 or not rows:
        raise RuntimeError(
            f"bench case {spec.case!r} failed (exit {done.returncode}):\n{done.stderr[-4000:]}"
        )
    return json.loads(rows[-1])


def run_all(settings: dict, log=print) -> dict:
    specs = case_specs(
        settings["sizes"],
        settings["steps"],
        settings["inversion_steps"],
        settings["decoders"],
        settings["solvers"],
    )
    specs = [spec for spec in specs if spec.kind in settings.get("kinds", KINDS)]
    runner = None if settings["isolate"] else _runner(settings)
    rows = []
    for spec in specs:
        row = (
            run_isolated(settings, spec)
            if runner is None
            else measure(runner, spec, settings["repeats"], settings["warmup"])
        )
        log(f"{spec.case} @ {spec.size}: {row['seconds']:.3f} s, peak {row['peak_memory_mb']:.0f} MB")
        rows.append(row)
    if settings["threads"]:
        torch.set_num_threads(settings["threads"])  # so machine_info reports what the runs used
    return {
        "machine": machine_info(torch.device(settings["device"])),
        "settings": settings,
        "memory_method": rows[0]["memory_method"] if rows else "",
        "rows": add_ratios(rows, default_case=_default_case(settings)),
    }


def _default_case(settings: dict) -> str | None:
    """The default stroke setting's row name; none when the run changed GradOP+'s N, lr or optimiser."""
    default = GradOPSettings()
    if (settings["adam_steps"], settings["lr"], settings["optimiser"]) != (
        default.adam_steps,
        default.lr,
        default.optimiser,
    ):
        return None
    return f"gradop+ {StrokeSettings().decoder}"


def _without_nan(value):
    """NaN is not JSON: write null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _without_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nan(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.worker:
        return run_worker(args.worker)
    settings = resolve_settings(args, parser)
    report = run_all(settings, log=lambda text: print(text, file=sys.stderr, flush=True))
    json_path, md_path = write_report(Path(args.out), _without_nan(report))
    print(f"wrote {json_path} and {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
