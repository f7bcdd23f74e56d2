"""The core's DiffusionModel protocol over the WebUI's loaded checkpoint (SD 1.x, SD 2.x, SDXL)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from lib_guided.adapters.diffusers_model import find_subsequence_positions
from lib_guided.diffusion.schedules import (
    model_input_scale,
    sigma_to_timestep,
    sigmas_from_alphas_cumprod,
    v_to_eps,
)


class WebUIModel:
    """Wraps ``shared.sd_model`` (ldm LatentDiffusion or sgm DiffusionEngine as patched by the WebUI)."""

    vae_scale_factor = 8

    def __init__(self, sd_model):
        self.sd_model = sd_model
        self.sigma_table = sigmas_from_alphas_cumprod(sd_model.alphas_cumprod.detach().double().cpu())
        self.is_v = getattr(sd_model, "parameterization", "eps") == "v"
        self.evals = 0
        self._table_on: dict[torch.device, torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def unet(self) -> nn.Module:
        return self.sd_model.model.diffusion_model

    def eps(self, x: torch.Tensor, sigma: torch.Tensor, cond) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, device=x.device).reshape(-1).expand(x.shape[0]).to(torch.float64)
        table = self._table_on.setdefault(x.device, self.sigma_table.to(x.device))
        z = model_input_scale(x, sigma.to(x.dtype))
        t = sigma_to_timestep(sigma, table).to(torch.float32)
        self.evals += 1
        out = self.sd_model.apply_model(z, t, cond)
        return v_to_eps(z, out, sigma.to(x.dtype)) if self.is_v else out

    @property
    def vae_dtype(self) -> torch.dtype:
        return next(self.sd_model.first_stage_model.parameters()).dtype

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        # Not decode_first_stage: that one is @torch.no_grad() and would cut the gradient. Like the
        # WebUI's own decode: outside the sampler's autocast, in the VAE's dtype (--no-half-vae: float32).
        vae = self.sd_model.first_stage_model
        with torch.autocast(latent.device.type, enabled=False):
            image = vae.decode(latent.to(self.vae_dtype) / self.sd_model.scale_factor)
        return (image.to(latent.dtype) + 1.0) / 2.0

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        # the WebUI casts images to the VAE's dtype before encoding; a float32 image meets a half VAE here
        with torch.autocast(image.device.type, enabled=False):
            encoded = self.sd_model.encode_first_stage((image * 2.0 - 1.0).to(self.vae_dtype))
            return self.sd_model.get_first_stage_encoding(encoded).to(image.dtype)

    @property
    def empty_prompt_chunk(self) -> torch.Tensor | None:
        """The empty prompt's [1, 77, C] context: pads prompts of different 75-token chunk counts."""
        return getattr(self.sd_model, "cond_stage_model_empty_prompt", None)

    def encode_prompt(self, prompts: Sequence[str]):
        return self.sd_model.get_learned_conditioning(list(prompts))

    def attention_modules(self) -> list[tuple[str, nn.Module]]:
        return [(n, m) for n, m in self.unet.named_modules() if n.endswith("attn2")]

    def self_attention_modules(self) -> list[tuple[str, nn.Module]]:
        return [(n, m) for n, m in self.unet.named_modules() if n.endswith("attn1")]

    def token_positions(self, prompt: str, phrase: str) -> list[int]:
        """Positions in the WebUI's chunked context (77 tokens per chunk, BOS/EOS in each)."""
        embedder = self._text_embedder()
        chunks, _ = embedder.tokenize_line(prompt)
        tokens = [t for chunk in chunks for t in chunk.tokens]
        phrase_tokens = embedder.tokenize([phrase])[0]
        return find_subsequence_positions(tokens, phrase_tokens)

    def _text_embedder(self):
        """The WebUI's custom-words CLIP wrapper (SD1/SD2: cond_stage_model; SDXL: its first embedder)."""
        candidates = [getattr(self.sd_model, "cond_stage_model", None)]
        conditioner = getattr(self.sd_model, "conditioner", None)
        if conditioner is not None:
            candidates.extend(conditioner.embedders)
        for candidate in candidates:
            if candidate is not None and hasattr(candidate, "tokenize_line"):
                return candidate
        raise RuntimeError("guided synthesis: this checkpoint's text encoder exposes no tokenizer")
