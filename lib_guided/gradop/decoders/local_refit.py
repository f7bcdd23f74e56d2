"""The linear decoder refitted around the first GradOP phase's latent: a local Jacobian, exact anchors.

The global linear map is the least-squares fit over typical latents: an average slope. The VAE's real
slope depends on what is being decoded, and the stroke gradient goes through that slope. At the start of
the first phase this decoder decodes the latent ``w0`` (the anchor) and ``w0 + delta`` for a small random
``delta`` (``probes`` times; forward passes, no backward), and refits the map to those differences
with the global map as a ridge prior. Every phase is anchored on a full-resolution decode of its first
latent: ``decode(w) = D(w0) + L_local(w) - L_local(w0)``.

On the lab (quick plan, ``tests/measure/local_refit_levers.py``) the map refitted in the first phase and
kept brings GradOP+'s stroke MSE to within 1.2 % of the full VAE's, at four full forward passes per image
(K 3); refitting in every phase (six passes) gives 0.2 %, and secants between the phases' anchors instead
of probes, or half-resolution anchors, lose 5-40 % (README).
"""

from __future__ import annotations

import torch

from lib_guided.gradop.decoders.anchored import AnchoredLinearDecoder
from lib_guided.gradop.decoders.linear import LinearLatentDecoder, area_downsample, design_rows, pixel_rows
from lib_guided.protocol import Decoder


class LocallyRefittedDecoder(AnchoredLinearDecoder):
    """An anchored linear decoder (anchored once per phase, at full resolution) whose map is refitted
    at the anchors of the first ``refit_phases`` phases (later ones keep the last refit).
    ``probe_scale``: the probe's std as a share of the latent's; ``prior``: the ridge weight pulling the
    local map towards the global one, relative to the mean diagonal of the probes' Gram matrix."""

    def __init__(
        self,
        full: Decoder,
        linear: LinearLatentDecoder,
        probes: int = 1,
        probe_scale: float = 0.5,
        prior: float = 0.1,
        seed: int = 0,
        refit_phases: int = 1,
    ) -> None:
        if probes < 1:
            raise ValueError(f"probes: at least 1, got {probes}")
        if refit_phases < 1:
            raise ValueError(f"refit_phases: at least 1, got {refit_phases}")
        super().__init__(full, linear)
        self.global_linear = linear
        self.probes, self.probe_scale, self.prior, self.seed = (
            int(probes),
            float(probe_scale),
            float(prior),
            seed,
        )
        self.refit_phases, self.phases_started = int(refit_phases), 0

    @torch.no_grad()
    def start_phase(self, latent: torch.Tensor) -> None:
        anchor = self.full(latent)
        if self.phases_started < self.refit_phases:
            self.refit(latent, anchor)
        self.phases_started += 1
        self.set_anchor(latent, anchor)

    @torch.no_grad()
    def refit(self, latent: torch.Tensor, anchor: torch.Tensor) -> None:
        """The map refitted around ``latent`` (whose full decode is ``anchor``) from probe decodes."""
        g = self.global_linear
        f, k = g.scale_factor, g.kernel_size
        base = area_downsample(anchor.double(), f)
        generator = torch.Generator().manual_seed(self.seed)  # the same probes every run: reproducible
        scale = self.probe_scale * float(latent.float().std())
        inputs, targets = [], []
        for _ in range(self.probes):
            delta = torch.randn(latent.shape, generator=generator).to(latent) * scale
            inputs.append(design_rows(delta, f, k, g.smoothing))
            targets.append(pixel_rows(area_downsample(self.full(latent + delta).double(), f) - base))
        self.linear = ridge_refit(torch.cat(inputs), torch.cat(targets), g, self.prior)


def ridge_refit(
    x: torch.Tensor, y: torch.Tensor, prior_map: LinearLatentDecoder, prior: float
) -> LinearLatentDecoder:
    """The map whose weights fit ``x`` (design rows [N, C*k*k]) to ``y`` (colour changes [N, 3]), pulled
    towards ``prior_map``'s weights by a ridge of ``prior`` times the mean diagonal of the Gram matrix;
    bias, upsampling and smoothing are ``prior_map``'s (changes carry no offset)."""
    prior_weight = prior_map.weight.double().to(x.device).reshape(3, -1).T
    gram = x.T @ x
    ridge = prior * gram.diagonal().mean()
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    weight = torch.linalg.solve(gram + ridge * eye, x.T @ y + ridge * prior_weight)
    return LinearLatentDecoder(
        weight.T.reshape(prior_map.weight.shape).float().cpu(),
        prior_map.bias,
        prior_map.scale_factor,
        prior_map.smoothing,
    )
