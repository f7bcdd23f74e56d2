"""The core's DiffusionModel protocol over Forge's loaded checkpoint (``p.sd_model``, a ForgeDiffusionEngine).

Forge keeps A1111's prompt handling (its text engine has the same ``tokenize_line``) and attention
module names, so those come from :class:`WebUIModel`; the UNet, the VAE and the noise schedule are
Forge's own objects (``forge_objects``), and its weights are made under ``torch.inference_mode()``.
"""

from __future__ import annotations

import copy
import weakref

import torch
from torch import nn

from lib_guided.adapters.webui.model import WebUIModel
from lib_guided.diffusion.schedules import sigmas_from_alphas_cumprod

# float copies of VAEs whose weights are inference tensors, for a gradient through the decoder
_TRAINABLE_VAES: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()


class ForgeModel(WebUIModel):
    vae_scale_factor = 8

    def __init__(self, sd_model):
        self.sd_model = sd_model
        self.patcher = sd_model.forge_objects.unet  # the UnetPatcher the sampler uses
        predictor = self.patcher.model.predictor
        self.sigma_table = sigmas_from_alphas_cumprod(predictor.alphas_cumprod.detach().double().cpu())
        self.is_v = predictor.prediction_type == "v_prediction"
        self.evals = 0

    @property
    def unet(self) -> nn.Module:
        return self.patcher.model.diffusion_model

    def eps(self, x: torch.Tensor, sigma: torch.Tensor, cond) -> torch.Tensor:
        # Forge's KModel takes sigma-space x and returns the denoised x0 (it scales the input and turns
        # eps or v into x0 itself), so eps = (x - x0) / sigma.
        sigma = torch.as_tensor(sigma, device=x.device).reshape(-1).expand(x.shape[0]).to(torch.float32)
        if isinstance(cond, dict):
            conds = {"c_crossattn": cond["crossattn"], "y": cond["vector"]}
        else:
            conds = {"c_crossattn": cond}
        self.evals += 1
        x0 = self.patcher.model.apply_model(x.float(), sigma, **conds)
        return ((x.float() - x0) / sigma.view(-1, 1, 1, 1)).to(x.dtype)

    @property
    def _vae(self):
        return self.sd_model.forge_objects.vae

    @property
    def vae_dtype(self) -> torch.dtype:
        return self._vae.vae_dtype

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        vae = self._vae
        _load(vae.patcher)
        network = vae.first_stage_model
        if latent.requires_grad and torch.is_grad_enabled():
            network = _trainable_copy(network)
        with torch.autocast(latent.device.type, enabled=False):
            z = network.process_out(latent.to(vae.device, self.vae_dtype))
            image = network.decode(z)
        return (image.to(latent.device, latent.dtype) + 1.0) / 2.0

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        # Forge's own encode: its VAE patcher takes [B, H, W, 3] in [0, 1] and samples the posterior
        with torch.autocast(image.device.type, enabled=False):
            encoded = self.sd_model.encode_first_stage(image.float() * 2.0 - 1.0)
        return encoded.to(image.device, image.dtype).clone()  # clone: a normal tensor, not an inference one

    def _text_embedder(self):
        for name in ("text_processing_engine", "text_processing_engine_l"):
            engine = getattr(self.sd_model, name, None)
            if engine is not None and hasattr(engine, "tokenize_line"):
                return engine
        raise RuntimeError("guided synthesis: this Forge model exposes no CLIP text engine")


def _load(patcher) -> None:
    """Forge moves models to the GPU on demand; its own decode does this first, and so must ours."""
    from backend import memory_management

    memory_management.load_model_gpu(patcher)


def _trainable_copy(network: nn.Module) -> nn.Module:
    """Forge builds its weights under ``torch.inference_mode()``; autograd cannot save those for backward,
    so the ``full`` gradient decoder runs on a copy made outside inference mode, kept per VAE."""
    copied = _TRAINABLE_VAES.get(network)
    if copied is None:
        with torch.inference_mode(False), torch.no_grad():
            copied = copy.deepcopy(network).requires_grad_(False)
        _TRAINABLE_VAES[network] = copied
    return copied
