"""The claim summaries read off a report (pure functions over report.json; the measured ones are in
test_lab_claims.py)."""

from lib_guided.edit_job import EditSettings
from lib_guided.lab.report_claims import auto_mask, decoders, early_exit


def synthesis_row(setting, mse, fd, seconds=1.0):
    return {
        "method": "gradop+",
        "setting": setting,
        "faithfulness_mse": mse,
        "realism_fd": fd,
        "seconds_per_scene": seconds,
    }


def test_decoders_are_compared_with_the_full_vae_row():
    report = {
        "synthesis": [
            {
                "method": "sdedit",
                "setting": "strength 0.5",
                "faithfulness_mse": 0.1,
                "realism_fd": 9.0,
                "seconds_per_scene": 0.1,
            },
            synthesis_row("strength 0.8, N 12", 0.010, 40.0, 1.2),
            synthesis_row("strength 0.8, N 6", 0.020, 50.0),  # another setting, not a decoder row
            synthesis_row("strength 0.8, N 12, linear decoder", 0.0105, 38.0, 0.7),
        ]
    }
    rows = {r["decoder"]: r for r in decoders(report)}
    assert set(rows) == {"full", "linear"}
    assert rows["full"]["faithfulness_change"] == 0.0
    assert abs(rows["linear"]["faithfulness_change"] - 0.05) < 1e-9
    assert abs(rows["linear"]["realism_change"] + 0.05) < 1e-9
    assert rows["linear"]["seconds_per_scene"] == 0.7


def exit_row(steps, exit_, tol, psnr, evals, max_iter=10):
    return {
        "solver": "aidi-a",
        "steps": steps,
        "exit": exit_,
        "tol": tol,
        "max_iter": max_iter,
        "psnr": psnr,
        "model_evals_per_step": evals,
        "converged_fraction": 1.0,
    }


def test_early_exit_picks_the_loosest_tolerance_within_the_margin():
    rows = [
        exit_row(10, "tol 0.03", 3e-2, 31.0, 2.0),
        exit_row(10, "tol 0.01", 1e-2, 32.8, 2.6),
        exit_row(10, "tol 0.001", 1e-3, 33.05, 4.1),
        exit_row(10, "5 iterations", 1e-12, 33.0, 5.0, 5),
        exit_row(20, "tol 0.03", 3e-2, 20.0, 1.5),
        exit_row(20, "5 iterations", 1e-12, 33.0, 5.0, 5),
    ]
    rows.append({**rows[0], "solver": "fixed-point", "psnr": 40.0})  # other solvers are not mixed in
    ten, twenty = early_exit({"inversion_early_exit": rows})
    assert (ten["steps"], ten["loosest_tol_within"], ten["model_evals_per_step"]) == (10, 1e-2, 2.6)
    assert ten["reference_psnr"] == 33.0
    assert twenty["loosest_tol_within"] is None and twenty["psnr"] is None


def edit_row(steps, mask, psnr, success, solver="aidi-a", injection=0.6):
    return {
        "solver": solver,
        "steps": steps,
        "mask": mask,
        "injection": injection,
        "background_psnr": psnr,
        "edit_success": success,
    }


def test_auto_mask_is_compared_with_the_object_mask_at_the_fewest_steps():
    report = {
        "editing": [
            edit_row(10, "none", 20.0, 0.9, solver="ddim"),
            *(
                edit_row(10, m, p, s)
                for m, p, s in (("none", 21.0, 0.8), ("auto", 26.5, 0.7), ("object", 27.0, 0.75))
            ),
            *(edit_row(20, m, 30.0, 1.0) for m in ("none", "auto", "object")),
            edit_row(10, "auto", 20.0, 0.1, injection=0.0),  # not the default injection: left out
        ]
    }
    claim = auto_mask(report)
    assert claim["steps"] == 10 and claim["injection"] == EditSettings().attention_injection
    assert abs(claim["gap_to_object_db"] - 0.5) < 1e-9
    assert claim["no_mask_background_psnr"] == 21.0 and claim["auto_edit_success"] == 0.7
    assert auto_mask({"editing": [edit_row(10, "none", 20.0, 0.9)]}) is None
