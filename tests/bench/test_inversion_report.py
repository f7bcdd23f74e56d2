import torch

from lib_guided.bench.inversion_report import format_table, measure_inversion


def test_report_rows_count_evaluations_and_rank_solvers(tiny_model):
    image = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    report = measure_inversion(
        tiny_model, image, ["a red barn"], ("ddim", "aidi-a"), (4,), tol=1e-4, max_iter=20
    )
    ddim, aidi = report["inversion"]
    assert ddim["model_evals_per_step"] == 1.0 and ddim["model_evals"] == 4
    assert aidi["model_evals_per_step"] > 1.0
    assert aidi["latent_mse"] < 0.01 * ddim["latent_mse"]
    assert "| aidi-a | 4 |" in format_table(report)
