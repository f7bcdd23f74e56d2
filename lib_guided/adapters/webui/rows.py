"""Which rows of each UNet call are conditional, for region control (the WebUI's CFG denoiser)."""

from __future__ import annotations

import torch

from lib_guided.regions.attention import RegionControl


class CondRowTracker:
    """Tells region control which rows of each UNet call are conditional.

    The CFG denoiser puts all cond rows first; with ``batch_cond_uncond`` off it calls the UNet in
    chunks, so the rows of a call are located by a running offset.
    """

    def __init__(self, control: RegionControl):
        self.control = control
        self.n_cond = 0
        self.offset = 0
        self.sigma = 0.0

    def start(self, n_cond: int, sigma: float) -> None:
        self.n_cond, self.offset, self.sigma = n_cond, 0, sigma

    def before_unet(self, module, args, kwargs) -> None:
        x = args[0] if args else kwargs["x"]
        if tuple(x.shape[-2:]) != tuple(self.control.latent_size):
            raise RuntimeError(
                f"Guided Synthesis: region control needs the whole {self.control.latent_size[0]}x"
                f"{self.control.latent_size[1]} latent in each UNet call, got a {x.shape[-2]}x{x.shape[-1]} "
                "tile (a tiling extension such as Tiled Diffusion splits it); switch tiling off or set "
                "the region weight to 0"
            )
        rows = self.cond_rows(x, kwargs)  # first: a host's rows may also bring the call's sigma
        self.control.set_step(self.sigma, cond_rows=rows.to(x.device))

    def cond_rows(self, x: torch.Tensor, kwargs: dict) -> torch.Tensor:
        rows = torch.arange(self.offset, self.offset + x.shape[0]) < self.n_cond
        self.offset += x.shape[0]
        return rows
