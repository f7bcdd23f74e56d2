"""The linear decoder anchored on one full decode per GradOP phase.

``decode(w) = D(w0) + L(w) - L(w0)``: exact at the phase's first latent ``w0`` (one forward pass of
the full decoder, no backward), moved by the fitted linear map ``L`` as Adam changes ``w``. Where a
VAE is far from linear (the lab's small one) the plain linear map misplaces colours; the anchor keeps
the absolute image right and leaves only the change to the linear map.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from lib_guided.protocol import Decoder


class AnchoredLinearDecoder:
    """``reanchor_every`` n > 0 also re-anchors on the current latent every n calls within a phase.

    ``anchor_downscale`` s > 1 decodes the anchor from the latent average-pooled s times and upsamples
    the image: s² times cheaper, and the stroke loss, which blurs (sigma 7 px at 512 px), hardly sees the
    lost detail.
    """

    def __init__(
        self, full: Decoder, linear: Decoder, reanchor_every: int = 0, anchor_downscale: int = 1
    ) -> None:
        self.full, self.linear, self.reanchor_every = full, linear, int(reanchor_every)
        self.anchor_downscale = int(anchor_downscale)
        self.offset: torch.Tensor | None = None
        self.calls = 0  # decodes since the last anchor

    @torch.no_grad()
    def start_phase(self, latent: torch.Tensor) -> None:
        self.set_anchor(latent, self.anchor_image(latent))

    @torch.no_grad()
    def anchor_image(self, latent: torch.Tensor) -> torch.Tensor:
        """The full decoder's image of ``latent``, from the latent pooled ``anchor_downscale`` times."""
        s = self.anchor_downscale
        if s > 1 and latent.shape[-1] % s == 0 and latent.shape[-2] % s == 0:
            small = self.full(F.avg_pool2d(latent, s))
            f = self.linear.scale_factor
            size = (latent.shape[-2] * f, latent.shape[-1] * f)
            return F.interpolate(small.float(), size=size, mode="bilinear", align_corners=False)
        return self.full(latent)

    @torch.no_grad()
    def set_anchor(self, latent: torch.Tensor, anchor: torch.Tensor) -> None:
        """Make the decoder exact at ``latent``, whose full decode is ``anchor``."""
        linear = self.linear(latent)
        self.offset = anchor.to(linear.dtype) - linear
        self.calls = 0

    def __call__(self, latent: torch.Tensor) -> torch.Tensor:
        if self.offset is None or self.offset.shape[0] != latent.shape[0]:
            raise RuntimeError("AnchoredLinearDecoder: start_phase(latent) must come before decoding")
        if self.reanchor_every and self.calls == self.reanchor_every:
            self.start_phase(latent.detach())  # counts from 0 again
        self.calls += 1
        return self.offset.to(latent.dtype) + self.linear(latent)
