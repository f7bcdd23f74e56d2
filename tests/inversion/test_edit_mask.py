"""The automatic blend mask: where the source and edit prompts' noise predictions differ."""

import torch

from lib_guided.diffusion.schedules import ddim_sigmas
from lib_guided.inversion.edit_mask import (
    auto_edit_mask,
    changed_words,
    prediction_difference,
    threshold_mask,
)
from lib_guided.inversion.invert import InversionSettings, invert


def test_changed_words():
    assert changed_words("a red circle on grass", "a blue circle on grass") == (["red"], ["blue"])
    assert changed_words("a cat", "a cat") == ([], [])
    assert changed_words("a cat", "a cat on a mat") == ([], ["on", "a", "mat"])


def test_threshold_mask_keeps_the_region_that_differs_and_grows_it():
    difference = torch.full((2, 1, 16, 16), 0.1)
    difference[0, :, 4:8, 4:8] = 1.0  # a 4x4 block differs in the first image
    difference[1, :, 10:14, 2:6] = 3.0  # another block, at another scale, in the second
    tight = threshold_mask(difference, threshold=0.5, dilate=0)
    assert set(tight.unique().tolist()) == {0.0, 1.0}
    # per image: scaled to its own range, so both blocks are found whatever their absolute size
    assert tight[0, 0, 5:7, 5:7].all() and tight[1, 0, 11:13, 3:5].all()
    assert not tight[0, 0, 10:, :].any() and not tight[1, 0, :8, :].any()
    grown = threshold_mask(difference, threshold=0.5, dilate=1)
    assert (grown >= tight).all() and grown.sum() > tight.sum()


def test_prediction_difference_is_zero_for_the_same_prompt_and_not_for_another(tiny_model):
    latent = tiny_model.encode(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    sigmas = ddim_sigmas(6, tiny_model.sigma_table)
    source = tiny_model.encode_prompt(["a red barn"])
    inverted = invert(tiny_model, latent, sigmas, source, None, InversionSettings(solver="ddim", steps=6))
    ascending = [float(s) for s in reversed(sigmas)]
    same = prediction_difference(tiny_model, inverted.trajectory, ascending, source, source.expand(2, -1, -1))
    assert same.shape == (2, 1, 8, 8) and float(same.abs().max()) == 0.0
    target = tiny_model.encode_prompt(["a blue barn", "a red boat"])
    other = prediction_difference(tiny_model, inverted.trajectory, ascending, source, target)
    assert float(other.amin()) >= 0.0 and float(other.amax()) > 0.0
    mask = auto_edit_mask(
        tiny_model, inverted.trajectory, ascending, "a red barn", "a blue barn", source, target
    )
    assert mask.shape == (2, 1, 8, 8) and 1 <= mask[0].sum() < 64
    none = auto_edit_mask(
        tiny_model, inverted.trajectory, ascending, "a red barn", "a red barn", source, source
    )
    assert none is None
