"""Configurations of the lab model: an SD 1.x-shaped latent diffusion model, shrunk for 64x64 images.

Same component classes and noise schedule as Stable Diffusion 1.x (AutoencoderKL, a cross-attention
UNet2DConditionModel, a CLIPTextModel, scaled-linear betas with epsilon prediction), so any code
written against a diffusers SD pipeline runs on it unchanged; only the widths are tiny.
"""

from __future__ import annotations

from lib_guided.lab.tokenizer import MAX_LENGTH

IMAGE_SIZE = 64
LATENT_CHANNELS = 4
VAE_DOWNSAMPLE = 4  # 64x64 -> 16x16 latents; 8x8 lost the object shapes (see train.py notes)
LATENT_SIZE = IMAGE_SIZE // VAE_DOWNSAMPLE
TEXT_HIDDEN = 64
SD_SCALING_FACTOR = 0.18215  # placeholder until training measures 1 / std of this VAE's latents


def vae_config() -> dict:
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 3,
        "up_block_types": ["UpDecoderBlock2D"] * 3,
        "block_out_channels": [16, 32, 64],
        "layers_per_block": 1,
        "act_fn": "silu",
        "latent_channels": LATENT_CHANNELS,
        "norm_num_groups": 8,
        "sample_size": IMAGE_SIZE,
        "scaling_factor": SD_SCALING_FACTOR,
        "force_upcast": False,
        "mid_block_add_attention": True,
    }


def unet_config() -> dict:
    return {
        "sample_size": LATENT_SIZE,
        "in_channels": LATENT_CHANNELS,
        "out_channels": LATENT_CHANNELS,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "block_out_channels": [32, 64, 64],
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "cross_attention_dim": TEXT_HIDDEN,
        "attention_head_dim": 4,  # SD's legacy name: this is the number of heads
        "act_fn": "silu",
        "flip_sin_to_cos": True,
        "freq_shift": 0,
    }


def text_encoder_config(vocab_size: int, bos_token_id: int, eos_token_id: int) -> dict:
    return {
        "vocab_size": vocab_size,
        "hidden_size": TEXT_HIDDEN,
        "intermediate_size": 4 * TEXT_HIDDEN,
        "projection_dim": TEXT_HIDDEN,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "max_position_embeddings": MAX_LENGTH,
        "hidden_act": "quick_gelu",
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
        "pad_token_id": eos_token_id,
    }


def scheduler_config() -> dict:
    """SD 1.x training schedule, stored as the DDIM config SD pipelines ship."""
    return {
        "num_train_timesteps": 1000,
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "prediction_type": "epsilon",
        "clip_sample": False,
        "set_alpha_to_one": False,
        "steps_offset": 1,
        "timestep_spacing": "leading",
    }


def build_vae(**overrides):
    from diffusers import AutoencoderKL

    return AutoencoderKL(**{**vae_config(), **overrides})


def build_unet(**overrides):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(**{**unet_config(), **overrides})


def build_text_encoder(vocab_size: int, bos_token_id: int, eos_token_id: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    return CLIPTextModel(CLIPTextConfig(**text_encoder_config(vocab_size, bos_token_id, eos_token_id)))


def build_scheduler(kind: str = "ddim"):
    from diffusers import DDIMScheduler, DDPMScheduler

    cls = DDIMScheduler if kind == "ddim" else DDPMScheduler
    config = scheduler_config()
    if cls is DDPMScheduler:
        config = {k: v for k, v in config.items() if k != "set_alpha_to_one"}
    return cls(**config)


def parameter_count(module) -> int:
    return sum(p.numel() for p in module.parameters())
