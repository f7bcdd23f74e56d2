"""Which batch rows are conditional: the ways a caller can say so, turned into one bool mask.

Region bias and recording act on the conditional rows only (the batch is [cond; uncond] in the WebUI
and in ``guided_eps``); the rest go through the module's own forward.
"""

from __future__ import annotations

import torch

RowSelection = int | slice | torch.Tensor | None


def row_mask(cond_rows: RowSelection, batch: int) -> torch.Tensor:
    """Bool [batch] (on the CPU) of the conditional rows; an int n means the first n rows."""
    if cond_rows is None:
        return torch.ones(batch, dtype=torch.bool)
    selected = torch.zeros(batch, dtype=torch.bool)
    if isinstance(cond_rows, bool):
        raise TypeError("cond_rows: give a row count, a slice or a tensor, not a bool")
    if isinstance(cond_rows, int):
        selected[: max(cond_rows, 0)] = True
    elif isinstance(cond_rows, slice):
        selected[cond_rows] = True
    elif isinstance(cond_rows, torch.Tensor) and cond_rows.dtype == torch.bool:
        if cond_rows.shape != (batch,):
            raise ValueError(f"cond_rows: bool mask of shape {tuple(cond_rows.shape)} for a batch of {batch}")
        selected = cond_rows.detach().cpu().clone()
    elif isinstance(cond_rows, torch.Tensor):
        selected[cond_rows.detach().cpu().long()] = True
    else:
        raise TypeError(f"cond_rows: unsupported type {type(cond_rows).__name__}")
    return selected
