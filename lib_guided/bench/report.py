"""The benchmark's output: ratios against the plain txt2img row of the same run, bench.json and bench.md."""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path

import torch

REQUIRED_KEYS = (
    "case",
    "device",
    "resolution",
    "seconds",
    "seconds_ratio_vs_plain",
    "peak_memory_mb",
    "peak_memory_ratio_vs_plain",
    "model_evals",
    "steps",
)
PLAIN_CASE = "txt2img"
# below this the CPU's resident-set growth is allocator noise, not a size worth a ratio
MIN_EXTRA_MB_FOR_RATIO = 1.0


def machine_info(device: torch.device) -> dict:
    info = {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "cpu_name": _cpu_name(),
    }
    try:
        import diffusers

        info["diffusers_version"] = diffusers.__version__
    except ImportError:
        pass
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
        info["cuda_version"] = torch.version.cuda
    else:
        info["device_name"] = info["cpu_name"]
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ratio(value: float, base: float, floor: float = 0.0) -> float | None:
    if base is None or value is None or not base > floor or math.isnan(value):
        return None
    return value / base


def add_ratios(rows: list[dict], default_case: str | None = None) -> list[dict]:
    """Time and memory ratios against the txt2img row of the same resolution and step count (rows of
    other step counts, inversions and the decoder fit: the txt2img row with the nearest steps, named in
    ``baseline_steps``). Rows of ``default_case`` (the default stroke setting) get ``"default": true``."""
    plain: dict[int, dict[int, dict]] = {}
    for r in rows:
        if r["case"] == PLAIN_CASE:
            plain.setdefault(r["resolution"], {})[r["steps"]] = r
    for row in rows:
        bases = plain.get(row["resolution"])
        if not bases:
            raise ValueError(f"no {PLAIN_CASE} row at resolution {row['resolution']}: the ratios need one")
        steps = min(bases, key=lambda n: (abs(n - row["steps"]), -n))
        base = bases[steps]
        row["baseline_steps"] = steps
        row["seconds_ratio_vs_plain"] = _ratio(row["seconds"], base["seconds"])
        row["peak_memory_ratio_vs_plain"] = _ratio(row["peak_memory_mb"], base["peak_memory_mb"])
        row["peak_extra_memory_ratio_vs_plain"] = _ratio(
            row["peak_extra_memory_mb"], base["peak_extra_memory_mb"], MIN_EXTRA_MB_FOR_RATIO
        )
        if default_case is not None and row["case"] == default_case:
            row["default"] = True
    return rows


def _fmt(value, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def format_markdown(report: dict) -> str:
    machine, settings = report["machine"], report["settings"]
    where = "separate processes" if settings["isolate"] else "one process"
    lines = [
        "# lib_guided benchmark",
        "",
        f"- arch `{settings['arch']}`, device `{settings['device']}` ({machine['device_name']}), dtype "
        f"`{settings['dtype']}`, torch {machine['torch_version']}, {machine['cpu_count']} CPUs, "
        f"{machine['torch_threads']} torch threads",
        f"- median of {settings['repeats']} timed runs after {settings['warmup']} warm-up; peak memory: "
        f"{report['memory_method']}; cases in {where}",
        f"- generation: {_steps(settings['steps'])} DDIM steps, CFG {settings['cfg']}; GradOP+ K 3 x N "
        f"{settings['adam_steps']} {settings.get('optimiser', 'adam')} steps at lr {settings['lr']}; "
        "inversion: tol "
        f"{settings['tol']}, max {settings['max_iter']} evaluations per step, inversion CFG 1",
        "",
        "| case | size | steps | seconds | × plain | peak MB | × plain | extra MB | × plain | model evals "
        "| evals / step | outside model | stroke MSE |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["rows"]:
        lines.append(
            f"| {r['case']}{' (default)' if r.get('default') else ''} | {r['resolution']} | {r['steps']} | "
            f"{_fmt(r['seconds'], 3)} | "
            f"{_fmt(r['seconds_ratio_vs_plain'])} | {_fmt(r['peak_memory_mb'], 0)} | "
            f"{_fmt(r['peak_memory_ratio_vs_plain'])} | {_fmt(r['peak_extra_memory_mb'], 0)} | "
            f"{_fmt(r['peak_extra_memory_ratio_vs_plain'])} | {_fmt(r['model_evals'])} | "
            f"{_fmt(r.get('model_evals_per_step'))} | {_fmt(_percent(r.get('outside_model_share')))} | "
            f"{_fmt(r.get('stroke_mse'), 4)} |"
        )
    lines += [
        "",
        "Ratios are against the txt2img row at the same size and steps (inversion and fit rows: the",
        "txt2img row with the nearest steps). *(default)*: the default stroke setting.",
        "*extra MB*: peak above the memory held before the run (the loaded model). *outside model*: share",
        "of the inversion's time spent outside UNet calls (for aidi-a: Anderson's bookkeeping plus the",
        "loop's residual norms, which fixed-point pays too). Random weights: times and memory are real, the",
        "images are not.",
    ]
    return "\n".join(lines) + "\n"


def _steps(steps) -> str:
    return " and ".join(str(n) for n in steps) if isinstance(steps, (list, tuple)) else str(steps)


def _percent(share: float | None) -> str | None:
    return None if share is None or math.isnan(share) else f"{100 * share:.1f} %"


def write_report(out_dir: Path, report: dict) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out_dir / "bench.json", out_dir / "bench.md"
    json_path.write_text(json.dumps(report, indent=2, allow_nan=True))
    md_path.write_text(format_markdown(report))
    return json_path, md_path
