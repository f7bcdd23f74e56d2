"""Small SD-like diffusers models with seeded random weights, built in the tests (no download).

Same architecture family as Stable Diffusion (cross-attention UNet, KL autoencoder with a factor-8
latent, CLIP text transformer with a BPE tokenizer), just narrow, so every code path that meets a
real model runs on a CPU in seconds.
"""

from __future__ import annotations

from pathlib import Path

import torch

from lib_guided.adapters.diffusers_model import DiffusersModel
from lib_guided.lab.tokenizer import build_tokenizer

WORDS = (
    "a photo of the red blue green yellow white circle square barn lake tree house sky grass "
    "on in above below and cat dog field river"
).split()


def build_tiny_components(folder: Path, seed: int = 0, prediction_type: str = "epsilon"):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = build_tokenizer(folder / "tokenizer", WORDS)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=tokenizer.model_max_length,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    unet = UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        layers_per_block=1,
        attention_head_dim=8,
        norm_num_groups=8,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
    )
    for module in (unet, vae, text_encoder):
        module.eval()
    return unet, vae, text_encoder, tokenizer


def build_tiny_model(folder: Path, seed: int = 0, prediction_type: str = "epsilon") -> DiffusersModel:
    unet, vae, text_encoder, tokenizer = build_tiny_components(folder, seed, prediction_type)
    return DiffusersModel(unet, vae, text_encoder, tokenizer, prediction_type=prediction_type)


def save_tiny_pipeline(folder: Path, seed: int = 0) -> Path:
    """Write the tiny model as a diffusers pipeline folder (what ``--model`` expects)."""
    from diffusers import DDIMScheduler

    unet, vae, text_encoder, tokenizer = build_tiny_components(folder, seed)
    unet.save_pretrained(folder / "unet")
    vae.save_pretrained(folder / "vae")
    text_encoder.save_pretrained(folder / "text_encoder")
    DDIMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    ).save_pretrained(folder / "scheduler")
    return folder
