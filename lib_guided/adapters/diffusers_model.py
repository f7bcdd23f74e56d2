"""Run the core on a diffusers model: UNet2DConditionModel + AutoencoderKL + a CLIP text encoder."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from lib_guided.diffusion.schedules import (
    model_input_scale,
    scaled_linear_alphas_cumprod,
    sigma_to_timestep,
    sigmas_from_alphas_cumprod,
    v_to_eps,
)


def alphas_cumprod_from_config(config: dict) -> torch.Tensor:
    """Training schedule from a diffusers scheduler config (the schedules SD-family models use)."""
    n = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 0.00085)), float(config.get("beta_end", 0.012))
    kind = config.get("beta_schedule", "scaled_linear")
    if kind == "scaled_linear":
        return scaled_linear_alphas_cumprod(n, start, end)
    if kind == "linear":
        betas = torch.linspace(start, end, n, dtype=torch.float64)
        return torch.cumprod(1.0 - betas, dim=0)
    raise ValueError(f"scheduler.beta_schedule: {kind!r} is not supported (use linear or scaled_linear)")


class DiffusersModel:
    """The :class:`~lib_guided.protocol.DiffusionModel` interface over diffusers/transformers modules."""

    def __init__(
        self,
        unet: nn.Module,
        vae: nn.Module,
        text_encoder: nn.Module,
        tokenizer,
        alphas_cumprod: torch.Tensor | None = None,
        prediction_type: str = "epsilon",
        scaling_factor: float | None = None,
    ):
        if prediction_type not in ("epsilon", "v_prediction"):
            raise ValueError(f"prediction_type: must be epsilon or v_prediction, got {prediction_type!r}")
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        self.prediction_type = prediction_type
        ac = alphas_cumprod if alphas_cumprod is not None else scaled_linear_alphas_cumprod()
        self.sigma_table = sigmas_from_alphas_cumprod(ac.to(torch.float64))
        self.scaling_factor = float(scaling_factor or getattr(vae.config, "scaling_factor", 0.18215))
        self.vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        self.evals = 0

    @classmethod
    def from_pretrained(
        cls, folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
    ) -> DiffusersModel:
        """Load a diffusers pipeline folder (unet/, vae/, text_encoder/, tokenizer/, scheduler/)."""
        from diffusers import AutoencoderKL, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        folder = Path(folder)
        missing = [p for p in ("unet", "vae", "text_encoder", "tokenizer") if not (folder / p).is_dir()]
        if missing:
            missing_list = ", ".join(missing)
            raise FileNotFoundError(f"model: {folder} is not a diffusers folder (missing {missing_list})")
        unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
        vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
        text_encoder = CLIPTextModel.from_pretrained(folder / "text_encoder")
        tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
        sched_file = folder / "scheduler" / "scheduler_config.json"
        sched = json.loads(sched_file.read_text()) if sched_file.exists() else {}
        for module in (unet, vae, text_encoder):
            module.to(device=device, dtype=dtype).eval().requires_grad_(False)
        return cls(
            unet,
            vae,
            text_encoder,
            tokenizer,
            alphas_cumprod_from_config(sched),
            sched.get("prediction_type", "epsilon"),
        )

    # -- the protocol -----------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def eps(self, x: torch.Tensor, sigma: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, device=x.device).reshape(-1).expand(x.shape[0]).to(torch.float64)
        z = model_input_scale(x, sigma.to(x.dtype))
        t = sigma_to_timestep(sigma, self.sigma_table.to(x.device)).to(torch.float32)
        self.evals += 1
        out = self.unet(z.to(self.dtype), t, encoder_hidden_states=cond.to(self.dtype)).sample.to(x.dtype)
        if self.prediction_type == "v_prediction":
            return v_to_eps(z, out, sigma.to(x.dtype))
        return out

    @property
    def vae_dtype(self) -> torch.dtype:
        return next(self.vae.parameters()).dtype

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        # in the VAE's own dtype and outside any autocast region, as SD pipelines decode
        with torch.autocast(latent.device.type, enabled=False):
            image = self.vae.decode(latent.to(self.vae_dtype) / self.scaling_factor).sample
        return (image.to(latent.dtype) + 1.0) / 2.0

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        with torch.autocast(image.device.type, enabled=False):
            posterior = self.vae.encode((image * 2.0 - 1.0).to(self.vae_dtype)).latent_dist
        return posterior.mean.to(image.dtype) * self.scaling_factor

    def encode_prompt(self, prompts: Sequence[str]) -> torch.Tensor:
        ids = self._token_ids(list(prompts))
        return self.text_encoder(ids.to(self.device)).last_hidden_state

    def attention_modules(self) -> list[tuple[str, nn.Module]]:
        return [(name, m) for name, m in self.unet.named_modules() if name.endswith("attn2")]

    def self_attention_modules(self) -> list[tuple[str, nn.Module]]:
        return [(name, m) for name, m in self.unet.named_modules() if name.endswith("attn1")]

    def token_positions(self, prompt: str, phrase: str) -> list[int]:
        prompt_ids = self._token_ids([prompt])[0].tolist()
        phrase_ids = self.tokenizer(phrase, add_special_tokens=False).input_ids
        return find_subsequence_positions(prompt_ids, phrase_ids)

    def _token_ids(self, prompts: list[str]) -> torch.Tensor:
        return self.tokenizer(
            prompts,
            padding="max_length",
            max_length=self.tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids


def find_subsequence_positions(sequence: Sequence[int], pattern: Sequence[int]) -> list[int]:
    """Every index covered by an occurrence of ``pattern`` in ``sequence`` (all occurrences)."""
    n = len(pattern)
    if n == 0:
        return []
    hits: list[int] = []
    for start in range(len(sequence) - n + 1):
        if list(sequence[start : start + n]) == list(pattern):
            hits.extend(range(start, start + n))
    return sorted(set(hits))


# The shipped lab model, found by path: the runtime never imports the (dev-only) lab package.
SHIPPED_MODEL_FOLDER = Path(__file__).resolve().parents[1] / "lab" / "model"


def shipped_model_folder() -> Path:
    """``lib_guided/lab/model``: the trained lab model (a diffusers folder) committed with the repo."""
    if not (SHIPPED_MODEL_FOLDER / "unet").is_dir():
        raise FileNotFoundError(
            f"the shipped lab model is missing: {SHIPPED_MODEL_FOLDER} has no unet/ (train one with "
            "`python -m lib_guided.lab.train --out lib_guided/lab/model`, or pass --model DIR)"
        )
    return SHIPPED_MODEL_FOLDER


def load_model(folder: str | Path | None = None) -> DiffusersModel:
    """A diffusers folder as a :class:`DiffusersModel`; None = the shipped lab model."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    # their load-time notices (e.g. "accelerate not found") would bury our own messages
    diffusers_logging.set_verbosity_error()
    transformers_logging.set_verbosity_error()
    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    return DiffusersModel.from_pretrained(folder if folder is not None else shipped_model_folder())
