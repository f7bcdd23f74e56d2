"""The papers' claims as numbers read off a lab report (report.md prints them, the tests assert them)."""

from __future__ import annotations

from lib_guided.lab.report_plan import GRADOP_PLUS_DEFAULT
from lib_guided.lab.synthesis_eval import sdedit_at


def _inversion_row(report: dict, solver: str, steps: int) -> dict:
    return next(r for r in report["inversion"] if r["solver"] == solver and r["steps"] == steps)


def gradop_plus_vs_sdedit(report: dict) -> dict:
    """GradOP+ (default settings) against SDEdit's strength sweep interpolated to the same faithfulness."""
    sdedit = [r for r in report["synthesis"] if r["method"] == "sdedit"]
    ours = next(r for r in report["synthesis"]
                if r["method"] == "gradop+" and r["setting"] == GRADOP_PLUS_DEFAULT.setting)
    matched = sdedit_at(ours["faithfulness_mse"], sdedit)
    faithfulness = [r["faithfulness_mse"] for r in sdedit]
    return {
        "gradop_plus_fd": ours["realism_fd"],
        "gradop_plus_faithfulness_mse": ours["faithfulness_mse"],
        "sdedit_fd_at_same_faithfulness": matched,
        "fd_ratio": ours["realism_fd"] / max(matched, 1e-12),
        "inside_sdedit_range": min(faithfulness) <= ours["faithfulness_mse"] <= max(faithfulness),
    }


def aidi_vs_ddim(report: dict, steps: int = 10) -> dict:
    ddim, aidi = _inversion_row(report, "ddim", steps), _inversion_row(report, "aidi-a", steps)
    return {
        "steps": steps,
        "ddim_psnr": ddim["psnr"],
        "aidi_a_psnr": aidi["psnr"],
        "vae_ceiling_psnr": report["vae_ceiling_psnr"],
        "gain_db": aidi["psnr"] - ddim["psnr"],
        "gap_to_ceiling_db": report["vae_ceiling_psnr"] - aidi["psnr"],
        "aidi_a_model_evals": aidi["model_evals"],
        "ddim_model_evals": ddim["model_evals"],
    }


def region_control(report: dict) -> dict:
    b = report["binding"]
    return {"without": b["without_control"], "with": b["with_control"],
            "gain": b["with_control"] - b["without_control"]}


def claims(report: dict) -> dict:
    return {
        "gradop_plus_vs_sdedit": gradop_plus_vs_sdedit(report),
        "aidi_vs_ddim": aidi_vs_ddim(report, min(report["plan"]["inversion_steps"])),
        "region_control": region_control(report),
    }
