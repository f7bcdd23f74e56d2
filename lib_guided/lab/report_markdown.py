"""report.md: the lab report's numbers as tables, with the claims first."""

from __future__ import annotations

from lib_guided.lab.report_claims import claims

PLOTS = {
    "realism_vs_faithfulness.png": "Realism (FD) against faithfulness (blurred-stroke MSE); lower is better",
    "inversion_psnr_vs_evals.png": "Reconstruction PSNR against model evaluations",
    "binding.png": "Binding accuracy with and without region control",
    "examples_synthesis.png": "strokes | SDEdit | GradOP+ | GradOP+ with region control",
    "examples_inversion.png": "image | DDIM inversion | AIDI-A (same steps)",
    "examples_editing.png": "image | reconstruction | automatic mask | edit | edit without attention "
    "injection (AIDI-A)",
}


METHOD = """## How it is measured

- Test scenes come from the world's dataset seed 1 (never trained on); prompts are their captions, strokes
  their stroke paintings. Every method starts each scene from the same seeded noise.
- **Faithfulness**: MSE between the blurred output and the blurred strokes (GradOP's painting function).
- **Realism**: Fréchet distance to held-out real scenes (dataset seed 2) in the lab classifier's feature
  space (per-channel mean and std of its first two blocks, standardised); real-vs-real at the same sample
  size is the noise floor, strokes-vs-real the flat-painting look.
- **Texture FD**: the same distance on label-free texture statistics (lib_guided/lab/realism.py: log
  Laplacian energy per channel, its kurtosis and cross-channel correlation, at 3 scales on the sky and the
  ground rows), in units of real-scene spread: it sees grain, shading and sharpness, not which shapes
  are there. Gaussian-blurred real images (sigma 1) show how much it punishes lost detail.
- **Caption accuracy** (model quality): text-only samples; objects are found anywhere as blobs of an
  object colour and named by the classifier; right when every captioned shape + colour is found and the
  background head agrees (lib_guided/lab/caption_eval.py).
- **Binding**: each object's painted region is cropped and its shape classified; a hit when it is the
  shape of the phrase bound to that colour. GradOP+ both times; "without" is region weight 0.
- **Inversion**: PSNR / SSIM of decode(reconstruct(invert(encode(x)))) against x; the VAE round trip is
  the ceiling. Model evaluations are UNet calls per image.
- **Editing**: the colour word of one object is changed; success when the classifier reads the new colour
  in the object's box; PSNR against the input outside the object's mask grown by 3 pixels.
"""


def _table(header: list[str], rows: list[list]) -> list[str]:
    def cell(v) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows),
    ]


def _texture_yardsticks(report: dict) -> list[list]:
    names = {
        "real_vs_real_texture_fd": "texture FD real vs real (same N)",
        "vae_vs_real_texture_fd": "texture FD VAE round trip vs real",
        "blurred_vs_real_texture_fd": "texture FD blurred real (sigma 1) vs real",
        "strokes_vs_real_texture_fd": "texture FD strokes vs real",
    }
    return [[label, report[key]] for key, label in names.items() if key in report]


def _or_dash(value):
    return "-" if value is None else value


def _model_quality(q: dict | None) -> list[str]:
    """The model on its own: captions alone, and what the UNet cost to train."""
    if not q:
        return []
    fd = q.get("text_only_fd") or {}
    steps = q["unet_steps"] if q["unet_steps"] is not None else "?"
    seconds = f"{q['train_seconds']:.0f} s" if q["train_seconds"] is not None else "? s"
    return [
        "## Model quality (text-only samples, no strokes)",
        "",
        *_table(
            ["quantity", "value"],
            [
                ["caption accuracy (every object and the background)", q["caption_accuracy"]],
                ["captioned objects found", q.get("caption_object_accuracy", "-")],
                ["background right", q.get("caption_background_accuracy", "-")],
                [
                    "caption accuracy of the real scenes (judge's ceiling)",
                    q.get("real_caption_accuracy", "-"),
                ],
                ["FD (classifier features)", _or_dash(fd.get("realism_fd"))],
                ["texture FD", _or_dash(fd.get("texture_fd"))],
            ],
        ),
        "",
        f"UNet: {steps} training steps, {seconds} on {q['device'] or '?'}; "
        f"{q.get('caption_images', '?')} samples.",
        "",
    ]


def _inversion_heading(settings: dict | None) -> str:
    s = settings or {"inversion_cfg": 1.0, "tol": 1e-3, "max_iter": 10}  # reports before the key
    return (
        f"## Inversion (inversion CFG {s['inversion_cfg']:g}, tol {s['tol']:g}, "
        f"at most {s['max_iter']} iterations per step)"
    )


def _auto_mask_claim(m: dict | None) -> list[str]:
    if m is None:
        return []
    return [
        f"- **Automatic edit mask ({m['steps']} steps)**: background PSNR {m['auto_background_psnr']:.2f} dB "
        f"against {m['object_background_psnr']:.2f} dB with the object's own mask and "
        f"{m['no_mask_background_psnr']:.2f} dB without a mask; edit success {m['auto_edit_success']:.2f} "
        f"({m['object_edit_success']:.2f} with the object's mask)."
    ]


def render(report: dict) -> str:
    c = claims(report)
    g, a, r = c["gradop_plus_vs_sdedit"], c["aidi_vs_ddim"], c["region_control"]
    truth = report["editing_ground_truth"]
    lines = [
        "# Quality lab report",
        "",
        f"Model: `{report['model']}` ({report.get('model_note', '')}); plan: {report['plan_name']}; "
        f"{report['seconds']:.0f} s on {report['threads']} thread(s).",
        "",
        "## Claims",
        "",
        f"- **GradOP+ vs SDEdit at matched faithfulness**: GradOP+ FD {g['gradop_plus_fd']:.3g} at stroke "
        f"MSE {g['gradop_plus_faithfulness_mse']:.3g}; SDEdit interpolated to that MSE: FD "
        f"{g['sdedit_fd_at_same_faithfulness']:.3g} (ratio {g['fd_ratio']:.2f}; inside SDEdit's sweep: "
        f"{g['inside_sdedit_range']}).",
        f"- **AIDI-A vs DDIM inversion at {a['steps']} steps**: {a['aidi_a_psnr']:.2f} dB vs "
        f"{a['ddim_psnr']:.2f} dB "
        f"(VAE ceiling {a['vae_ceiling_psnr']:.2f} dB; {a['aidi_a_model_evals']:.0f} vs "
        f"{a['ddim_model_evals']:.0f} model evaluations).",
        f"- **Region control** ({report['binding'].get('region_mode', 'bias')} mode): binding accuracy "
        f"{r['without']:.3f} without, {r['with']:.3f} with "
        f"(real images {report['binding']['real_images']:.3f}, VAE round trip "
        f"{report['binding']['vae_round_trip']:.3f}; {report['binding']['objects']} objects).",
        *_auto_mask_claim(c.get("auto_mask")),
        "",
        "## Metric yardsticks",
        "",
        *_table(
            ["quantity", "value"],
            [
                ["FD real vs real (same N)", report["real_vs_real_fd"]],
                ["FD VAE round trip vs real", report["vae_vs_real_fd"]],
                ["FD strokes vs real", report["strokes_vs_real_fd"]],
                ["stroke MSE of the real images", report["real_faithfulness_mse"]],
                *_texture_yardsticks(report),
                ["VAE ceiling PSNR (dB)", report["vae_ceiling_psnr"]],
                ["VAE ceiling SSIM", report.get("vae_ceiling_ssim", float("nan"))],
                ["edit metric on a ground-truth recolouring", truth["recoloured_success"]],
                ["edit metric on the unedited image", truth["unedited_success"]],
            ],
        ),
        "",
        "## Synthesis",
        "",
        *_table(
            ["method", "setting", "stroke MSE", "FD", "texture FD", "s / scene"],
            [
                [
                    s["method"],
                    s["setting"],
                    s["faithfulness_mse"],
                    s["realism_fd"],
                    s.get("texture_fd", "-"),
                    s["seconds_per_scene"],
                ]
                for s in report["synthesis"]
            ],
        ),
        "",
        *_model_quality(report.get("model_quality")),
        _inversion_heading(report.get("inversion_settings")),
        "",
        *_table(
            ["solver", "steps", "model evals", "PSNR (dB)", "SSIM", "latent MSE"],
            [
                [
                    i["solver"],
                    i["steps"],
                    i["model_evals"],
                    i["psnr"],
                    i.get("ssim", float("nan")),
                    i["latent_mse"],
                ]
                for i in report["inversion"]
            ],
        ),
        "",
        "## Gradient decoders (GradOP+ strength 0.8, N 12)",
        "",
        *_table(
            ["decoder", "stroke MSE", "FD", "stroke MSE vs full", "FD vs full", "s / scene"],
            [
                [
                    d["decoder"],
                    d["faithfulness_mse"],
                    d["realism_fd"],
                    f"{d['faithfulness_change']:+.1%}",
                    f"{d['realism_change']:+.1%}",
                    d["seconds_per_scene"],
                ]
                for d in c["decoders"]
            ],
        ),
        "",
        "## Inversion early exit (iteration cap 10; the last rows run a fixed number of iterations)",
        "",
        *_table(
            ["solver", "steps", "exit", "model evals / step", "PSNR (dB)", "converged"],
            [
                [
                    e["solver"],
                    e["steps"],
                    e["exit"],
                    e["model_evals_per_step"],
                    e["psnr"],
                    e["converged_fraction"] if e["converged_fraction"] is not None else "-",
                ]
                for e in report.get("inversion_early_exit", [])
            ],
        ),
        "",
        *(
            f"- AIDI-A at {e['steps']} steps: the loosest tolerance within 0.3 dB of {e['reference']} "
            f"({e['reference_psnr']:.2f} dB) is {e['loosest_tol_within']:g}: {e['psnr']:.2f} dB at "
            f"{e['model_evals_per_step']:.2f} model evaluations per step."
            if e["loosest_tol_within"] is not None
            else f"- AIDI-A at {e['steps']} steps: no tolerance came within 0.3 dB of {e['reference']}."
            for e in c["early_exit"]
        ),
        "",
        "## Editing (one object recoloured by its colour word)",
        "",
        *_table(
            ["solver", "steps", "blend mask", "attention injection", "edit success", "PSNR outside (dB)"],
            [
                [
                    e["solver"],
                    e["steps"],
                    e["mask"],
                    e.get("injection", 0.0),
                    e["edit_success"],
                    e["background_psnr"],
                ]
                for e in report["editing"]
            ],
        ),
        "",
        METHOD,
        "## Plots",
        "",
        *(f"- {title}: ![{name}]({name})" for name, title in PLOTS.items()),
        "",
    ]
    return "\n".join(lines)
