"""Stochastic edit variants: n rows of one image with eta > 0 share one inversion; eta 0 is deterministic."""

import torch

import lib_guided.edit_job as edit_job
from lib_guided.edit_job import EditSettings, aidi_edit
from lib_guided.inversion.invert import InversionSettings

SETTINGS = InversionSettings(solver="aidi-a", steps=4, max_iter=3)


def run(model, latent, rows, eta, injection=0.6):
    return aidi_edit(
        model,
        latent.expand(rows, -1, -1, -1),
        "a red barn",
        ["a blue barn"] * rows,
        [""] * rows,
        SETTINGS,
        EditSettings(edit_cfg=4.0, eta=eta, attention_injection=injection),
        seed=5,
        with_reconstruction=True,
    )


def inverted_rows(monkeypatch) -> list[int]:
    """The batch size of every inversion aidi_edit runs."""
    seen: list[int] = []
    original = edit_job.invert

    def recording(model, x, *args, **kwargs):
        seen.append(x.shape[0])
        return original(model, x, *args, **kwargs)

    monkeypatch.setattr(edit_job, "invert", recording)
    return seen


def test_variants_of_one_image_share_one_inversion_and_differ(tiny_model, monkeypatch):
    latent = tiny_model.encode(torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)))
    single = run(tiny_model, latent, 1, eta=0.0)
    seen = inverted_rows(monkeypatch)
    for injection in (0.0, 0.6):
        variants = run(tiny_model, latent, 3, eta=0.7, injection=injection)
        assert seen.pop() == 1  # inverted once, not three times
        rows = variants.latents
        assert not torch.allclose(rows[0], rows[1], atol=1e-3)
        assert not torch.allclose(rows[1], rows[2], atol=1e-3)
        # the reconstruction stays the deterministic round trip, whatever eta the edit uses
        for recon in variants.reconstruction:
            assert torch.allclose(recon, single.reconstruction[0], atol=1e-4)
    same = run(tiny_model, latent, 3, eta=0.0)
    for row in same.latents:
        assert torch.allclose(row, single.latents[0], atol=1e-4)


def test_different_images_are_inverted_each(tiny_model, monkeypatch):
    latent = tiny_model.encode(torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1)))
    seen = inverted_rows(monkeypatch)
    settings = EditSettings(edit_cfg=4.0)
    both = aidi_edit(tiny_model, latent, "a red barn", ["a blue barn"] * 2, ["", ""], SETTINGS, settings)
    assert seen == [2]
    one = aidi_edit(tiny_model, latent[:1], "a red barn", ["a blue barn"], [""], SETTINGS, settings)
    assert torch.allclose(both.latents[:1], one.latents, atol=1e-4)
    assert not torch.allclose(both.latents[0], both.latents[1], atol=1e-3)
