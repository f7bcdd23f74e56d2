"""Cross-attention map recording, for AIDI's automatic edit mask (where the model attends to a word).

The recorder is handed to :func:`lib_guided.regions.attention.controlled_attention`; the manual
attention path gives it each layer's probabilities, and it keeps their running mean on the latent grid.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch
import torch.nn.functional as F

from lib_guided.regions.batch_rows import RowSelection
from lib_guided.regions.layer_grid import layer_factor, layer_size


class AttentionRecorder:
    """Accumulates cross-attention maps of the conditional rows, averaged over heads, layers and calls.

    Every recorded layer's map is resized to ``latent_size`` first. ``factors`` limits recording to some
    layer resolutions (downsampling factors, e.g. ``{2}``); None records all. Without a RegionControl,
    ``cond_rows`` here says which rows are conditional (same convention as ``RegionControl.set_step``);
    with one, the control's rows are used.
    """

    def __init__(
        self,
        latent_size: tuple[int, int],
        factors: Collection[int] | None = None,
        cond_rows: RowSelection = None,
    ) -> None:
        self.latent_size = (int(latent_size[0]), int(latent_size[1]))
        self.factors = None if factors is None else set(factors)
        self.cond_rows = cond_rows
        self.calls = 0
        self._sum: torch.Tensor | None = None

    def wants(self, n_query: int) -> bool:
        return self.factors is None or layer_factor(n_query, self.latent_size) in self.factors

    def add(self, probs: torch.Tensor) -> None:
        """Record attention probabilities [B_cond, heads, N, T] of one layer call."""
        batch, _, n_query, n_tokens = probs.shape
        height, width = layer_size(n_query, self.latent_size)
        maps = probs.detach().float().mean(dim=1).transpose(1, 2).reshape(batch, n_tokens, height, width)
        if (height, width) != self.latent_size:
            maps = F.interpolate(maps, size=self.latent_size, mode="bilinear", align_corners=False)
        if self._sum is None:
            self._sum = torch.zeros_like(maps)
        elif self._sum.shape != maps.shape:
            raise ValueError(
                f"recorded maps changed shape from {tuple(self._sum.shape)} to {tuple(maps.shape)}; "
                "call reset() between runs with different batches or prompts"
            )
        self._sum += maps
        self.calls += 1

    def maps(self, token_indices: Sequence[int] | None = None) -> torch.Tensor:
        """Mean attention [B_cond, len(tokens), h, w] (all tokens when ``token_indices`` is None)."""
        if self._sum is None:
            raise RuntimeError("no cross-attention call was recorded")
        mean = self._sum / self.calls
        return mean if token_indices is None else mean[:, list(token_indices)]

    def reset(self) -> None:
        self.calls = 0
        self._sum = None
