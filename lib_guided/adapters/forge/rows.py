"""Which rows of each UNet call are conditional, as Forge's sampling function marks them.

Forge batches conditional and unconditional chunks in the order its conditions come (not cond-first as
A1111's denoiser does) and passes each row's mark (0 = conditional) and sigma in ``transformer_options``.
"""

from __future__ import annotations

import torch

from lib_guided.adapters.webui.rows import CondRowTracker


class ForgeRowTracker(CondRowTracker):
    def cond_rows(self, x: torch.Tensor, kwargs: dict) -> torch.Tensor:
        options = kwargs.get("transformer_options") or {}
        marks = options.get("cond_mark")
        if marks is None or marks.shape[0] != x.shape[0]:
            raise RuntimeError(
                "Guided Synthesis: Forge's UNet call carries no per-row cond marks; region control cannot "
                "tell the prompt's rows from the negative prompt's (set the region weight to 0)"
            )
        sigmas = options.get("sigmas")
        if sigmas is not None:
            self.sigma = float(sigmas.reshape(-1)[0])
        return marks.reshape(-1) == 0
