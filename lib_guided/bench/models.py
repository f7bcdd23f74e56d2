"""Random-weight models of real sizes for the benchmark: speed and memory depend on shapes, not weights.

``sd15``: SD 1.5's UNet (320/640/1280/1280, 2 layers per block, 8 heads, 768-d cross-attention) and
SD VAE (128/256/512/512). ``sdxl``: SDXL's UNet (320/640/1280, transformer depth 1/2/10, 2048-d
cross-attention, text-time added conditioning) and VAE. ``tiny``: the test suite's tiny model
(``tests/tiny_models.py``), for quick checks.

No text encoder: it runs once per image and does not matter for speed. ``encode_prompt`` returns a
fixed random conditioning of the real shape per prompt ([n, 77, 768] for SD 1.5; for SDXL a dict with
the [n, 77, 2048] token states, the [n, 1280] pooled embedding and the [n, 6] size/crop ids).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch

from lib_guided.adapters.diffusers_model import DiffusersModel
from lib_guided.diffusion.schedules import model_input_scale, sigma_to_timestep

ARCHS = ("tiny", "sd15", "sdxl")


def _sd_vae_config() -> dict:
    return {
        "in_channels": 3,
        "out_channels": 3,
        "down_block_types": ["DownEncoderBlock2D"] * 4,
        "up_block_types": ["UpDecoderBlock2D"] * 4,
        "block_out_channels": [128, 256, 512, 512],
        "layers_per_block": 2,
        "latent_channels": 4,
        "norm_num_groups": 32,
        "sample_size": 512,
        "scaling_factor": 0.18215,
    }


def unet_config(arch: str) -> dict:
    if arch == "sd15":
        return {
            "sample_size": 64,
            "block_out_channels": [320, 640, 1280, 1280],
            "down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
            "up_block_types": ["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
            "layers_per_block": 2,
            "cross_attention_dim": 768,
            "attention_head_dim": 8,
        }
    if arch == "sdxl":
        return {
            "sample_size": 128,
            "block_out_channels": [320, 640, 1280],
            "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
            "layers_per_block": 2,
            "transformer_layers_per_block": [1, 2, 10],
            "attention_head_dim": [5, 10, 20],
            "cross_attention_dim": 2048,
            "use_linear_projection": True,
            "addition_embed_type": "text_time",
            "addition_time_embed_dim": 256,
            "projection_class_embeddings_input_dim": 2816,
        }
    if arch == "tiny":  # keep in step with tests/tiny_models.py (a test checks)
        return {
            "sample_size": 8,
            "block_out_channels": [32, 64],
            "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
            "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
            "cross_attention_dim": 32,
            "layers_per_block": 1,
            "attention_head_dim": 8,
            "norm_num_groups": 8,
        }
    raise ValueError(f"arch: must be one of {', '.join(ARCHS)}, got {arch!r}")


def vae_config(arch: str) -> dict:
    if arch == "sd15":
        return _sd_vae_config()
    if arch == "sdxl":
        return {**_sd_vae_config(), "sample_size": 1024, "scaling_factor": 0.13025}
    if arch == "tiny":
        return {
            "in_channels": 3,
            "out_channels": 3,
            "down_block_types": ["DownEncoderBlock2D"] * 4,
            "up_block_types": ["UpDecoderBlock2D"] * 4,
            "block_out_channels": [8, 16, 16, 16],
            "latent_channels": 4,
            "norm_num_groups": 8,
            "layers_per_block": 1,
        }
    raise ValueError(f"arch: must be one of {', '.join(ARCHS)}, got {arch!r}")


# (tokens, token width, pooled width or None) of the conditioning each UNet expects
COND_SHAPES = {"tiny": (20, 32, None), "sd15": (77, 768, None), "sdxl": (77, 2048, 1280)}


class BenchModel(DiffusersModel):
    """A DiffusersModel whose prompts map to fixed random conditionings (no text encoder, no tokenizer)."""

    def __init__(self, unet, vae, arch: str, cond_shape: tuple[int, int, int | None] | None = None) -> None:
        super().__init__(unet, vae, text_encoder=None, tokenizer=None)
        self.arch = arch
        self.tokens, self.width, self.pooled = cond_shape or COND_SHAPES[arch]

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor | dict:
        rows = [self._prompt_cond(p) for p in prompts]
        states = torch.cat([r[0] for r in rows]).to(self.device, self.dtype)
        if self.pooled is None:
            return states
        pooled = torch.cat([r[1] for r in rows]).to(self.device, self.dtype)
        # SDXL's size/crop conditioning: original size, crop top-left, target size
        ids = torch.tensor([[1024.0, 1024.0, 0.0, 0.0, 1024.0, 1024.0]] * len(prompts))
        return {"crossattn": states, "text_embeds": pooled, "time_ids": ids.to(self.device, self.dtype)}

    def _prompt_cond(self, prompt: str) -> tuple[torch.Tensor, torch.Tensor]:
        seed = int.from_bytes(hashlib.sha256(prompt.encode("utf-8")).digest()[:4], "little")
        generator = torch.Generator().manual_seed(seed)
        states = torch.randn(1, self.tokens, self.width, generator=generator)
        pooled = torch.randn(1, self.pooled or 1, generator=generator)
        return states, pooled

    # The pipeline makes its noise and stroke targets on the CPU and the adapter does not move them, so
    # on CUDA every model call moves its input to the model's device and its output back (a no-op on the
    # CPU, and once the pipeline places tensors on the model's device).

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return super().decode(latent.to(self.device)).to(latent.device)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return super().encode(image.to(self.device)).to(image.device)

    def eps(self, x: torch.Tensor, sigma: torch.Tensor, cond) -> torch.Tensor:
        return self._eps_on_device(x.to(self.device), sigma, cond).to(x.device)

    def _eps_on_device(self, x: torch.Tensor, sigma: torch.Tensor, cond) -> torch.Tensor:
        if not isinstance(cond, dict):
            return super().eps(x, sigma, cond)
        # SDXL: the adapter's eps takes token states only; pass the added conditioning too
        sigma = torch.as_tensor(sigma, device=x.device).reshape(-1).expand(x.shape[0]).to(torch.float64)
        z = model_input_scale(x, sigma.to(x.dtype))
        t = sigma_to_timestep(sigma, self.sigma_table.to(x.device)).to(torch.float32)
        self.evals += 1
        added = {
            "text_embeds": cond["text_embeds"].to(self.dtype),
            "time_ids": cond["time_ids"].to(self.dtype),
        }
        out = self.unet(
            z.to(self.dtype),
            t,
            encoder_hidden_states=cond["crossattn"].to(self.dtype),
            added_cond_kwargs=added,
        )
        return out.sample.to(x.dtype)

    def token_positions(self, prompt: str, phrase: str) -> list[int]:
        return []


def build_bench_model(
    arch: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, seed: int = 0
) -> BenchModel:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # its notice about casting with .to() is noise here
    torch.manual_seed(seed)
    with torch.device(device):  # initialise on the device: an SDXL UNet takes minutes on a CPU
        unet = UNet2DConditionModel(in_channels=4, out_channels=4, **unet_config(arch))
        vae = AutoencoderKL(**vae_config(arch))
    for module in (unet, vae):
        module.to(device=device, dtype=dtype).eval().requires_grad_(False)
    return BenchModel(unet, vae, arch)
