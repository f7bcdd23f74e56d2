"""The lab report's PNG figures (matplotlib, drawn off-screen)."""

from __future__ import annotations

from pathlib import Path

import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display on CI or on the training machine
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


MARKERS = {"text": "s", "sdedit": "o", "gradop+": "*", "gradop": "D"}


def realism_vs_faithfulness(report: dict, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    sdedit = [r for r in report["synthesis"] if r["method"] == "sdedit"]
    sdedit.sort(key=lambda r: r["faithfulness_mse"])
    ax.plot([r["faithfulness_mse"] for r in sdedit], [r["realism_fd"] for r in sdedit], "o-", label="SDEdit")
    for r in sdedit:
        label = r["setting"].replace("strength ", "s=")
        ax.annotate(label, (r["faithfulness_mse"], r["realism_fd"]), fontsize=7)
    for method in ("gradop+", "gradop", "text"):
        rows = [r for r in report["synthesis"] if r["method"] == method]
        if rows:
            ax.scatter(
                [r["faithfulness_mse"] for r in rows],
                [r["realism_fd"] for r in rows],
                marker=MARKERS[method],
                s=90,
                label="text only" if method == "text" else method.upper().replace("GRADOP", "GradOP"),
                zorder=3,
            )
            for r in rows if method != "text" else []:
                ax.annotate(r["setting"], (r["faithfulness_mse"], r["realism_fd"]), fontsize=7)
    ax.axhline(report["real_vs_real_fd"], color="grey", ls="--", lw=1, label="real vs real")
    ax.axvline(report["real_faithfulness_mse"], color="grey", ls=":", lw=1, label="real images' stroke MSE")
    ax.set_xlabel("faithfulness: MSE(blur(output), blur(strokes))  (lower = more faithful)")
    ax.set_ylabel("realism: FD to real scenes (lower = more real)")
    ax.legend(fontsize=8)
    _save(plt, fig, path)


def inversion_curves(report: dict, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for solver in dict.fromkeys(r["solver"] for r in report["inversion"]):
        rows = sorted((r for r in report["inversion"] if r["solver"] == solver), key=lambda r: r["steps"])
        ax.plot([r["model_evals"] for r in rows], [r["psnr"] for r in rows], "o-", label=solver)
        for r in rows:
            ax.annotate(f"{r['steps']}", (r["model_evals"], r["psnr"]), fontsize=7)
    ax.axhline(report["vae_ceiling_psnr"], color="grey", ls="--", lw=1, label="VAE round trip (ceiling)")
    ax.set_xscale("log")
    ax.set_xlabel("model evaluations per image (inversion; labels = DDIM steps)")
    ax.set_ylabel("reconstruction PSNR (dB)")
    ax.legend(fontsize=8)
    _save(plt, fig, path)


def binding_bars(report: dict, path: Path) -> None:
    plt = _pyplot()
    b = report["binding"]
    names = ["without region control", "with region control", "real images"]
    values = [b["without_control"], b["with_control"], b["real_images"]]
    fig, ax = plt.subplots(figsize=(5.5, 3.5))
    ax.bar(names, values, color=["#999999", "#3070c0", "#60a060"])
    for i, v in enumerate(values):
        ax.text(i, v + 0.01, f"{v:.2f}", ha="center")
    ax.axhline(0.25, color="grey", ls=":", lw=1, label="chance (4 shapes)")
    ax.set_ylim(0, 1.08)
    ax.set_ylabel("shape of the bound phrase found in its region")
    ax.legend(fontsize=8)
    _save(plt, fig, path)


def image_grid(columns: dict[str, torch.Tensor], path: Path, rows: int) -> None:
    """One column per entry ([N, 3, H, W] in [0, 1]), its key as the title."""
    plt = _pyplot()
    rows = min(rows, *(len(v) for v in columns.values()))
    fig, axes = plt.subplots(rows, len(columns), figsize=(1.6 * len(columns), 1.6 * rows), squeeze=False)
    for j, (title, images) in enumerate(columns.items()):
        axes[0][j].set_title(title, fontsize=8)
        for i in range(rows):
            axes[i][j].imshow(images[i].permute(1, 2, 0).clamp(0, 1).numpy(), interpolation="nearest")
            axes[i][j].axis("off")
    _save(plt, fig, path)
