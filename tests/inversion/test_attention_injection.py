"""Attention injection in AIDI edits: the reconstruction branch beside the edit, its self-attention maps
used by the edit for the first part of the steps; 0 = off and the edit exactly as before."""

from __future__ import annotations

import pytest
import torch

from lib_guided.diffusion.schedules import ddim_sigmas
from lib_guided.edit_job import EditSettings, aidi_edit
from lib_guided.errors import GuidedInputError
from lib_guided.inversion.attention_injection import (
    AttentionInjection,
    injected_attention,
    injected_edit,
    prompts_line_up,
)
from lib_guided.inversion.editing import edit, reconstruct
from lib_guided.inversion.invert import InversionSettings, invert
from tests.regions.test_attention_signatures import LdmCrossAttention, reference_attention

SETTINGS = InversionSettings(solver="aidi-a", steps=5, max_iter=3)


@pytest.fixture(scope="module")
def inverted(tiny_model):
    latent = tiny_model.encode(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    source, uncond = tiny_model.encode_prompt(["a red barn"]), tiny_model.encode_prompt([""])
    result = invert(tiny_model, latent, ddim_sigmas(5, tiny_model.sigma_table), source, uncond, SETTINGS)
    return latent, source, uncond, result


def test_edit_rows_take_the_reference_rows_queries_and_keys():
    module = LdmCrossAttention()
    x = torch.randn(4, 6, 16, generator=torch.Generator().manual_seed(1))  # [ref a, ref b, edit a, edit b]
    injection = AttentionInjection(images=2)
    assert injection.source_rows(4, x.device).tolist() == [0, 1, 0, 1]
    assert injection.source_rows(8, x.device).tolist() == [0, 1, 0, 1, 4, 5, 4, 5]  # [cond; uncond]
    assert injection.source_rows(6, x.device) is None  # not our layout: the module's own forward
    context = torch.randn(4, 3, 16)
    with injected_attention([module], injection):
        off = module(x)
        injection.active = True
        on = module(x)
        cross = module(x, context)  # cross-attention is left alone unless asked for
    assert "forward" not in module.__dict__  # restored
    assert torch.equal(off, reference_attention(module, x, x))
    assert torch.allclose(on[:2], off[:2], atol=1e-6)  # the reference rows are untouched
    # an edit row: the reference row's softmax(QK^T), its own values
    assert torch.allclose(on[2:], handed_over(module, x, x), atol=1e-5)
    assert not torch.allclose(on[2:], off[2:], atol=1e-3)
    assert injection.calls == 1 and torch.equal(cross, reference_attention(module, x, context))


def handed_over(module, x, keys):
    """The edit rows' attention with the reference rows' map: softmax(Q_ref K_ref^T) V_edit."""
    heads = lambda t: t.reshape(4, t.shape[1], 2, 8).transpose(1, 2)  # noqa: E731
    q, k, v = heads(module.to_q(x)), heads(module.to_k(keys)), heads(module.to_v(keys))
    maps = (q[:2] @ k[:2].transpose(-1, -2) * module.scale).softmax(-1)
    return module.to_out((maps @ v[2:]).transpose(1, 2).reshape(2, x.shape[1], 16))


def test_cross_attention_maps_are_handed_over_only_when_asked():
    module = LdmCrossAttention()
    x = torch.randn(4, 6, 16, generator=torch.Generator().manual_seed(2))
    context = torch.randn(4, 3, 16, generator=torch.Generator().manual_seed(3))
    injection = AttentionInjection(images=2, cross=True)
    injection.active = True
    with injected_attention([module], injection):
        on = module(x, context)
    assert torch.allclose(on[:2], reference_attention(module, x[:2], context[:2]), atol=1e-6)
    assert torch.allclose(on[2:], handed_over(module, x, context), atol=1e-5)


def test_prompts_line_up_token_for_token(tiny_model):
    assert prompts_line_up(tiny_model, "a red barn", ["a blue barn", "a red cat"])
    assert not prompts_line_up(tiny_model, "a red barn", ["a big blue barn"])


def test_zero_is_the_plain_edit_bit_for_bit(tiny_model, inverted):
    latent, source, uncond, _ = inverted
    target = tiny_model.encode_prompt(["a blue barn", "a red boat"])
    args = (tiny_model, latent, "a red barn", ["a blue barn", "a red boat"], ["", ""], SETTINGS)
    default = aidi_edit(*args, EditSettings(edit_cfg=4.0, attention_injection=0.0), with_reconstruction=True)
    again = invert(tiny_model, latent, ddim_sigmas(5, tiny_model.sigma_table), source, uncond, SETTINGS)
    assert torch.equal(default.latents, edit(tiny_model, again, None, target, uncond, 4.0))
    assert torch.equal(default.reconstruction, reconstruct(tiny_model, again, source, uncond, 1.0))


def test_the_batched_branches_are_the_plain_edit_and_reconstruction_until_injected(tiny_model, inverted):
    _, source, uncond, result = inverted
    target = tiny_model.encode_prompt(["a blue barn", "a red boat"])
    plain_edit = edit(tiny_model, result, None, target, uncond, 4.0)
    plain_recon = reconstruct(tiny_model, result, source, uncond, 1.0)
    edited, recon = injected_edit(tiny_model, result, source, target, uncond, 1.0, 4.0, 1e-6)
    assert torch.allclose(edited, plain_edit, atol=1e-4) and torch.allclose(recon, plain_recon, atol=1e-4)
    for cross in (False, True):
        injected, recon_on = injected_edit(
            tiny_model, result, source, target, uncond, 1.0, 4.0, 1.0, cross=cross
        )
        assert torch.allclose(recon_on, plain_recon, atol=1e-4)  # the reference branch never changes
        assert not torch.allclose(injected, plain_edit, atol=1e-3)  # what it does: measured on the lab


def test_same_prompt_and_cfg_with_full_injection_is_the_reconstruction(tiny_model, inverted):
    _, source, uncond, result = inverted
    edited, recon = injected_edit(tiny_model, result, source, source.expand(2, -1, -1), uncond, 3.0, 3.0, 1.0)
    assert torch.allclose(edited, recon, atol=1e-5)


def test_one_job_gives_the_reconstruction_without_another_pass(tiny_model, inverted):
    latent, *_ = inverted
    args = (tiny_model, latent, "a red barn", ["a blue barn"] * 2, ["", ""], SETTINGS)
    evals, outcomes = [], []
    off, on = EditSettings(edit_cfg=4.0, attention_injection=0.0), EditSettings(edit_cfg=4.0)
    assert on.attention_injection > 0  # on by default
    for settings in (off, on):
        before = tiny_model.evals
        outcomes.append(aidi_edit(*args, settings, with_reconstruction=True))
        evals.append(tiny_model.evals - before - outcomes[-1].inversion_evals)
    plain, batched = outcomes
    assert evals == [10, 5]  # 5 steps: the reconstruction rode along in the edit's calls
    assert torch.allclose(batched.reconstruction, plain.reconstruction, atol=1e-4)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "half"])
def test_out_of_range_fractions_name_the_field(bad):
    with pytest.raises(GuidedInputError, match="^attention_injection"):
        EditSettings(attention_injection=bad)
