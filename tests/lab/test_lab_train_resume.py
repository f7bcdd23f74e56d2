"""The lab's diffusion training resumes from its state folder exactly where it stopped."""

from __future__ import annotations

import pytest
import torch

from lib_guided.lab import model_configs as mc
from lib_guided.lab.run_log import RunLog
from lib_guided.lab.train_unet import STATE_FILE, min_snr_weights, train_unet


class Killed(Exception):
    pass


def _kill(ema_models, step, seconds):
    assert seconds > 0  # the checkpoint's report records what the run cost so far
    raise Killed(step)


def _run(steps: int, state_dir, seed: int = 0, checkpoint=None):
    torch.manual_seed(seed)
    unet = mc.build_unet(block_out_channels=[8, 16, 16], norm_num_groups=4)
    text_encoder = mc.build_text_encoder(20, 0, 1)
    data = torch.Generator().manual_seed(0)
    latents = torch.randn(6, 4, 8, 8, generator=data)
    ids = torch.randint(2, 20, (6, 20), generator=data)
    gen = torch.Generator().manual_seed(seed)
    ema, done, _ = train_unet(
        unet,
        text_encoder,
        mc.build_scheduler("ddpm"),
        latents,
        torch.zeros_like(latents),
        ids,
        ids[0],
        1.0,
        steps,
        RunLog(None),
        gen,
        batch=2,
        checkpoint_every=2,
        checkpoint=checkpoint,
        min_snr_gamma=5.0,
        state_dir=state_dir,
        warmup=1,
        log_every=100,
    )
    return ema, done


def test_resumed_training_equals_one_uninterrupted_run(tmp_path):
    straight, done = _run(4, tmp_path / "straight")
    assert done == 4
    with pytest.raises(Killed):  # a first sitting killed at its first checkpoint, after step 2
        _run(4, tmp_path / "resumed", checkpoint=_kill)
    assert (tmp_path / "resumed" / STATE_FILE).is_file()
    # the second sitting builds fresh models (different init seed): everything must come from the state
    resumed, done = _run(4, tmp_path / "resumed", seed=1)
    assert done == 4
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_min_snr_weights_cap_only_the_low_noise_steps():
    scheduler = mc.build_scheduler("ddpm")
    t = torch.tensor([0, 100, 500, 999])
    w = min_snr_weights(scheduler, t, 5.0)
    abar = scheduler.alphas_cumprod[t]
    snr = abar / (1 - abar)
    assert torch.all(w[snr <= 5] == 1.0) and torch.all(w[snr > 5] < 1.0)
    assert torch.allclose(w[snr > 5], 5.0 / snr[snr > 5])
    assert torch.equal(min_snr_weights(scheduler, t, None), torch.ones(4))
