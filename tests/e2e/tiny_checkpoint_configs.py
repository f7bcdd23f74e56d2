"""Configs of the tiny SD1-, SD2-v- and SDXL-architecture checkpoints ``make_tiny_checkpoints.py`` makes.

The configs target the WebUI's own model code (``ldm`` from
``$WEBUI_ROOT/repositories/stable-diffusion-stability-ai`` and ``sgm`` from
``$WEBUI_ROOT/repositories/generative-models``), with the real architectures narrowed:

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

Also the configs of those two tiny hub repositories' text encoders. Plain dicts: nothing here imports
torch or the WebUI.
"""

from __future__ import annotations

import json

from prepare_clip_cache import clip_model_config, clip_text_config, clip_vision_config

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
