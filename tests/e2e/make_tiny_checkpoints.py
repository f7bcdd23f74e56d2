"""Make tiny SD1-, SD2-v- and SDXL-architecture checkpoints with random weights for the end-to-end tests.

The models are built by the WebUI's own model code (``ldm`` from
``$WEBUI_ROOT/repositories/stable-diffusion-stability-ai`` and ``sgm`` from
``$WEBUI_ROOT/repositories/generative-models``, imported at run time) from configs written here,
with the real architectures narrowed:

- SD1: ``ldm`` LatentDiffusion; UNet 32 channels, channel_mult [1, 2], one res block, attention at
  the first level (and in the middle block), context 32; AutoencoderKL ch 32 with four levels
  (factor 8, 4 latent channels); text encoder ``FrozenCLIPEmbedder`` whose ``version`` is a local
  hub repository ``e2e-tiny/clip-text-32`` (CLIP's tokenizer, a 32-wide 2-layer text config).
- SD2-v: the SD1 shapes with ``parameterization: v``, linear attention projections and ldm's
  ``FrozenOpenCLIPEmbedder`` on ``hf-hub:e2e-tiny/open-clip-32`` (see SDXL), so the WebUI treats it as
  SD 2.x (``is_sd2``, the v-prediction denoisers).
- SDXL: ``sgm`` DiffusionEngine; UNet 32 channels, channel_mult [1, 2, 2], attention at the last two
  levels (linear projections, as SDXL), context 32 + 32 = 64, ``adm`` vector input; the same VAE;
  text encoders ``FrozenCLIPEmbedder`` (``e2e-tiny/clip-text-32``, penultimate layer) and
  ``FrozenOpenCLIPEmbedder2`` whose ``arch`` is ``hf-hub:e2e-tiny/open-clip-32`` (an open_clip model
  config and weights in the hub cache: open_clip builds any architecture from there).

Weights: seeded random init from the constructors, then every norm layer gets weight 1 + noise
and bias noise (with LayerNorm 1/0 the CLIP output mean can be exactly 0 and the WebUI's emphasis
step divides 0/0 into NaN), and every parameter left all-zero (ldm/sgm zero-initialise output
convolutions and ``proj_out``) gets small noise, so gradients through the models are non-zero.

Each checkpoint is written as ``.safetensors`` with its ``.yaml`` config beside it (the WebUI picks
the config up by name). Run with the WebUI's virtualenv::

    WEBUI_ROOT=/work/webui $WEBUI_ROOT/venv/bin/python tests/e2e/make_tiny_checkpoints.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare_clip_cache import (  # noqa: E402
    clip_model_config,
    clip_text_config,
    clip_vision_config,
    write_clip_repo,
    write_hf_repo,
)

TINY_CLIP_REPO = "e2e-tiny/clip-text-32"
TINY_OPEN_CLIP_REPO = "e2e-tiny/open-clip-32"
WIDTH = 32  # text encoder width; the SD1 UNet context_dim

VAE_PARAMS = {
    "embed_dim": 4,
    "monitor": "val/rec_loss",
    "ddconfig": {
        "double_z": True,
        "z_channels": 4,
        "resolution": 256,
        "in_channels": 3,
        "out_ch": 3,
        "ch": 32,
        "ch_mult": [1, 2, 4, 4],
        "num_res_blocks": 1,
        "attn_resolutions": [],
        "dropout": 0.0,
    },
    "lossconfig": {"target": "torch.nn.Identity"},
}


def sd1_config() -> dict:
    return {
        "model": {
            "base_learning_rate": 1.0e-04,
            "target": "ldm.models.diffusion.ddpm.LatentDiffusion",
            "params": {
                "linear_start": 0.00085,
                "linear_end": 0.0120,
                "num_timesteps_cond": 1,
                "log_every_t": 200,
                "timesteps": 1000,
                "first_stage_key": "jpg",
                "cond_stage_key": "txt",
                "image_size": 64,
                "channels": 4,
                "cond_stage_trainable": False,
                "conditioning_key": "crossattn",
                "monitor": "val/loss_simple_ema",
                "scale_factor": 0.18215,
                "use_ema": False,
                "unet_config": {
                    "target": "ldm.modules.diffusionmodules.openaimodel.UNetModel",
                    "params": {
                        "image_size": 32,
                        "in_channels": 4,
                        "out_channels": 4,
                        "model_channels": 32,
                        "attention_resolutions": [1],
                        "num_res_blocks": 1,
                        "channel_mult": [1, 2],
                        "num_head_channels": 8,
                        "use_spatial_transformer": True,
                        "transformer_depth": 1,
                        "context_dim": WIDTH,
                        "use_checkpoint": False,
                        "legacy": False,
                    },
                },
                "first_stage_config": {
                    "target": "ldm.models.autoencoder.AutoencoderKL",
                    "params": VAE_PARAMS,
                },
                "cond_stage_config": {
                    "target": "ldm.modules.encoders.modules.FrozenCLIPEmbedder",
                    "params": {"version": TINY_CLIP_REPO},
                },
            },
        }
    }


def sd2v_config() -> dict:
    """SD 2.x-v narrowed: v-prediction, an OpenCLIP text encoder (penultimate layer), linear attention
    projections; otherwise the SD1 shapes above."""
    config = json.loads(json.dumps(sd1_config()))
    params = config["model"]["params"]
    params["parameterization"] = "v"
    params["unet_config"]["params"].update({"use_linear_in_transformer": True, "context_dim": WIDTH})
    params["cond_stage_config"] = {
        "target": "ldm.modules.encoders.modules.FrozenOpenCLIPEmbedder",
        "params": {
            "arch": "hf-hub:" + TINY_OPEN_CLIP_REPO,
            "version": None,
            "freeze": True,
            "layer": "penultimate",
        },
    }
    return config


def sdxl_config() -> dict:
    size_outdim = 16  # per number; SDXL: 256
    adm_in_channels = WIDTH + 3 * 2 * size_outdim  # pooled open_clip embedding + 3 size pairs
    size_embedder = {"target": "sgm.modules.encoders.modules.ConcatTimestepEmbedderND"}
    size_embedder["params"] = {"outdim": size_outdim}
    vae = json.loads(json.dumps(VAE_PARAMS))
    vae["ddconfig"]["attn_type"] = "vanilla"
    return {
        "model": {
            "target": "sgm.models.diffusion.DiffusionEngine",
            "params": {
                "scale_factor": 0.13025,
                "disable_first_stage_autocast": True,
                "denoiser_config": {
                    "target": "sgm.modules.diffusionmodules.denoiser.DiscreteDenoiser",
                    "params": {
                        "num_idx": 1000,
                        "weighting_config": {
                            "target": "sgm.modules.diffusionmodules.denoiser_weighting.EpsWeighting"
                        },
                        "scaling_config": {
                            "target": "sgm.modules.diffusionmodules.denoiser_scaling.EpsScaling"
                        },
                        "discretization_config": {
                            "target": "sgm.modules.diffusionmodules.discretizer.LegacyDDPMDiscretization"
                        },
                    },
                },
                "network_config": {
                    "target": "sgm.modules.diffusionmodules.openaimodel.UNetModel",
                    "params": {
                        "adm_in_channels": adm_in_channels,
                        "num_classes": "sequential",
                        "use_checkpoint": False,
                        "in_channels": 4,
                        "out_channels": 4,
                        "model_channels": 32,
                        "attention_resolutions": [2, 4],
                        "num_res_blocks": 1,
                        "channel_mult": [1, 2, 2],
                        "num_head_channels": 8,
                        "use_spatial_transformer": True,
                        "use_linear_in_transformer": True,
                        "transformer_depth": [1, 1, 1],
                        "context_dim": 2 * WIDTH,
                        "spatial_transformer_attn_type": "softmax",
                        "legacy": False,
                    },
                },
                "conditioner_config": {
                    "target": "sgm.modules.GeneralConditioner",
                    "params": {
                        "emb_models": [
                            {
                                "is_trainable": False,
                                "input_key": "txt",
                                "target": "sgm.modules.encoders.modules.FrozenCLIPEmbedder",
                                "params": {"version": TINY_CLIP_REPO, "layer": "hidden", "layer_idx": 1},
                            },
                            {
                                "is_trainable": False,
                                "input_key": "txt",
                                "target": "sgm.modules.encoders.modules.FrozenOpenCLIPEmbedder2",
                                "params": {
                                    "arch": "hf-hub:" + TINY_OPEN_CLIP_REPO,
                                    "version": None,
                                    "freeze": True,
                                    "layer": "penultimate",
                                    "always_return_pooled": True,
                                    "legacy": False,
                                },
                            },
                            {"is_trainable": False, "input_key": "original_size_as_tuple", **size_embedder},
                            {"is_trainable": False, "input_key": "crop_coords_top_left", **size_embedder},
                            {"is_trainable": False, "input_key": "target_size_as_tuple", **size_embedder},
                        ]
                    },
                },
                "first_stage_config": {
                    "target": "sgm.models.autoencoder.AutoencoderKLInferenceWrapper",
                    "params": vae,
                },
            },
        }
    }


def tiny_clip_config() -> dict:
    text = clip_text_config(
        hidden_size=WIDTH,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=2 * WIDTH,
        projection_dim=WIDTH,
    )
    vision = clip_vision_config(
        hidden_size=WIDTH,
        num_hidden_layers=1,
        num_attention_heads=4,
        intermediate_size=2 * WIDTH,
        projection_dim=WIDTH,
        image_size=28,
    )
    return clip_model_config(text, vision, projection_dim=WIDTH)


def tiny_open_clip_config() -> dict:
    return {
        "model_cfg": {
            "embed_dim": WIDTH,
            "vision_cfg": {"image_size": 28, "layers": 1, "width": WIDTH, "head_width": 8, "patch_size": 14},
            "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": WIDTH, "heads": 4, "layers": 2},
        },
        "preprocess_cfg": {
            "mean": [0.48145466, 0.4578275, 0.40821073],
            "std": [0.26862954, 0.26130258, 0.27577711],
        },
    }


def perturb(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Norm layers get weight 1 + noise and bias noise; all-zero parameters get small noise."""
    norm_types = (torch.nn.LayerNorm, torch.nn.GroupNorm)

    def noise(t: torch.Tensor, std: float) -> torch.Tensor:
        return torch.randn(t.shape, generator=generator, dtype=torch.float32).to(t.dtype) * std

    with torch.no_grad():
        done = set()
        for m in module.modules():
            if isinstance(m, norm_types) and m.weight is not None:
                m.weight.copy_(1 + noise(m.weight, 0.1))
                m.bias.copy_(noise(m.bias, 0.1))
                done.update({id(m.weight), id(m.bias)})
        for p in module.parameters():
            if id(p) in done or p.abs().max() > 0:
                continue
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(noise(p, 0.5 / fan_in**0.5 if p.dim() > 1 else 0.01))


@contextlib.contextmanager
def clip_text_model_from_config():
    """Build ``CLIPTextModel.from_pretrained(repo)`` from the repo's config alone (no weights)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    had_own = "from_pretrained" in CLIPTextModel.__dict__
    original = CLIPTextModel.__dict__.get("from_pretrained")

    def from_config(cls, name, *args, **kwargs):
        return cls(CLIPTextConfig.from_pretrained(name))

    CLIPTextModel.from_pretrained = classmethod(from_config)
    try:
        yield
    finally:
        if had_own:
            CLIPTextModel.from_pretrained = original
        else:
            del CLIPTextModel.from_pretrained


def to_yaml(config: dict) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(config))


def build(config: dict, seed: int) -> torch.nn.Module:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(config).model
    torch.manual_seed(seed)
    module_name, cls_name = cfg.target.rsplit(".", 1)
    cls = getattr(__import__(module_name, fromlist=[cls_name]), cls_name)
    params = OmegaConf.to_container(cfg.params, resolve=True)
    quiet = io.StringIO()  # ldm/sgm print a line per layer
    with clip_text_model_from_config(), contextlib.redirect_stdout(quiet):
        model = cls(**params)
    return model.eval()


def save(model: torch.nn.Module, config: dict, out: Path) -> Path:
    from safetensors.torch import save_file

    state = {
        k: (v.float() if v.is_floating_point() else v).detach().contiguous().clone()
        for k, v in model.state_dict().items()
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out))
    out.with_suffix(".yaml").write_text(to_yaml(config))
    n = sum(v.numel() for v in state.values())
    print(f"{out}: {len(state)} tensors, {n / 1e6:.2f} M values, {out.stat().st_size / 2**20:.1f} MiB")
    return out


def write_tiny_open_clip_repo(seed: int, generator: torch.Generator) -> None:
    """The hub repository open_clip builds ``hf-hub:e2e-tiny/open-clip-32`` from (config + weights)."""
    import open_clip

    config = tiny_open_clip_config()
    torch.manual_seed(seed)
    model = open_clip.CLIP(**config["model_cfg"])
    perturb(model, generator)
    buf = io.BytesIO()
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, buf)
    write_hf_repo(
        TINY_OPEN_CLIP_REPO,
        {
            "open_clip_config.json": (json.dumps(config, indent=2) + "\n").encode(),
            "open_clip_pytorch_model.bin": buf.getvalue(),
        },
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--webui-root", type=Path, default=Path(os.environ.get("WEBUI_ROOT", "/work/webui")))
    parser.add_argument(
        "--out-dir", type=Path, default=None, help="default: WEBUI_ROOT/models/Stable-diffusion"
    )
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--only", choices=["sd1", "sd2v", "sdxl"], default=None)
    args = parser.parse_args(argv)
    out_dir = args.out_dir or args.webui_root / "models" / "Stable-diffusion"

    # The hub cache must answer offline; the tiny repositories are written before the models are built.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    write_clip_repo(TINY_CLIP_REPO, tiny_clip_config())

    if args.only in (None, "sd1"):
        sys.path.insert(0, str(args.webui_root / "repositories" / "stable-diffusion-stability-ai"))
        config = sd1_config()
        model = build(config, args.seed)
        perturb(model, torch.Generator().manual_seed(args.seed))
        save(model, config, out_dir / "tiny-sd1.safetensors")

    if args.only in (None, "sd2v"):
        sys.path.insert(0, str(args.webui_root / "repositories" / "stable-diffusion-stability-ai"))
        write_tiny_open_clip_repo(args.seed, torch.Generator().manual_seed(args.seed + 1))  # as SDXL's
        config = sd2v_config()
        model = build(config, args.seed + 2)
        perturb(model, torch.Generator().manual_seed(args.seed + 2))
        save(model, config, out_dir / "tiny-sd2v.safetensors")

    if args.only in (None, "sdxl"):
        sys.path.insert(0, str(args.webui_root / "repositories" / "generative-models"))
        generator = torch.Generator().manual_seed(args.seed + 1)
        write_tiny_open_clip_repo(args.seed, generator)
        config = sdxl_config()
        model = build(config, args.seed)
        perturb(model, generator)
        save(model, config, out_dir / "tiny-sdxl.safetensors")


if __name__ == "__main__":
    main()
