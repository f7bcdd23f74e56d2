"""Make tiny SD1-, SD2-v- and SDXL-architecture checkpoints with random weights for the end-to-end tests.

The models are built by the WebUI's own model code (``ldm`` from
``$WEBUI_ROOT/repositories/stable-diffusion-stability-ai`` and ``sgm`` from
``$WEBUI_ROOT/repositories/generative-models``, imported at run time) from the configs in
``tiny_checkpoint_configs.py`` (the narrowed architectures are described there).

Weights: seeded random init from the constructors, then every norm layer gets weight 1 + noise
and bias noise (with LayerNorm 1/0 the CLIP output mean can be exactly 0 and the WebUI's emphasis
step divides 0/0 into NaN), and every parameter left all-zero (ldm/sgm zero-initialise output
convolutions and ``proj_out``) gets small noise, so gradients through the models are non-zero.

Each checkpoint is written as ``.safetensors`` with its ``.yaml`` config beside it (the WebUI picks
the config up by name). Run with the WebUI's virtualenv::

    WEBUI_ROOT=/work/webui $WEBUI_ROOT/venv/bin/python tests/e2e/make_tiny_checkpoints.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare_clip_cache import write_clip_repo, write_hf_repo  # noqa: E402
from tiny_checkpoint_configs import (  # noqa: E402
    TINY_CLIP_REPO,
    TINY_OPEN_CLIP_REPO,
    sd1_config,
    sd2v_config,
    sdxl_config,
    tiny_clip_config,
    tiny_open_clip_config,
)


def perturb(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Norm layers get weight 1 + noise and bias noise; all-zero parameters get small noise."""
    norm_types = (torch.nn.LayerNorm, torch.nn.GroupNorm)

    def noise(t: torch.Tensor, std: float) -> torch.Tensor:
        return torch.randn(t.shape, generator=generator, dtype=torch.float32).to(t.dtype) * std

    with torch.no_grad():
        done = set()
        for m in module.modules():
            if isinstance(m, norm_types) and m.weight is not None:
                m.weight.copy_(1 + noise(m.weight, 0.1))
                m.bias.copy_(noise(m.bias, 0.1))
                done.update({id(m.weight), id(m.bias)})
        for p in module.parameters():
            if id(p) in done or p.abs().max() > 0:
                continue
            fan_in = p[0].numel() if p.dim() > 1 else 1
            p.copy_(noise(p, 0.5 / fan_in**0.5 if p.dim() > 1 else 0.01))


@contextlib.contextmanager
def clip_text_model_from_config():
    """Build ``CLIPTextModel.from_pretrained(repo)`` from the repo's config alone (no weights)."""
    from transformers import CLIPTextConfig, CLIPTextModel

    had_own = "from_pretrained" in CLIPTextModel.__dict__
    original = CLIPTextModel.__dict__.get("from_pretrained")

    def from_config(cls, name, *args, **kwargs):
        return cls(CLIPTextConfig.from_pretrained(name))

    CLIPTextModel.from_pretrained = classmethod(from_config)
    try:
        yield
    finally:
        if had_own:
            CLIPTextModel.from_pretrained = original
        else:
            del CLIPTextModel.from_pretrained


def to_yaml(config: dict) -> str:
    from omegaconf import OmegaConf

    return OmegaConf.to_yaml(OmegaConf.create(config))


def build(config: dict, seed: int) -> torch.nn.Module:
    from omegaconf import OmegaConf

    cfg = OmegaConf.create(config).model
    torch.manual_seed(seed)
    module_name, cls_name = cfg.target.rsplit(".", 1)
    cls = getattr(__import__(module_name, fromlist=[cls_name]), cls_name)
    params = OmegaConf.to_container(cfg.params, resolve=True)
    quiet = io.StringIO()  # ldm/sgm print a line per layer
    with clip_text_model_from_config(), contextlib.redirect_stdout(quiet):
        model = cls(**params)
    return model.eval()


def save(model: torch.nn.Module, config: dict, out: Path) -> Path:
    from safetensors.torch import save_file

    state = {
        k: (v.float() if v.is_floating_point() else v).detach().contiguous().clone()
        for k, v in model.state_dict().items()
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out))
    out.with_suffix(".yaml").write_text(to_yaml(config))
    n = sum(v.numel() for v in state.values())
    print(f"{out}: {len(state)} tensors, {n / 1e6:.2f} M values, {out.stat().st_size / 2**20:.1f} MiB")
    return out


def write_tiny_open_clip_repo(seed: int, generator: torch.Generator) -> None:
    """The hub repository open_clip builds ``hf-hub:e2e-tiny/open-clip-32`` from (config + weights)."""
    import open_clip

    config = tiny_open_clip_config()
    torch.manual_seed(seed)
    model = open_clip.CLIP(**config["model_cfg"])
    perturb(model, generator)
    buf = io.BytesIO()
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, buf)
    write_hf_repo(
        TINY_OPEN_CLIP_REPO,
        {
            "open_clip_config.json": (json.dumps(config, indent=2) + "\n").encode(),
            "open_clip_pytorch_model.bin": buf.getvalue(),
        },
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--webui-root", type=Path, default=Path(os.environ.get("WEBUI_ROOT", "/work/webui")))
    parser.add_argument(
        "--out-dir", type=Path, default=None, help="default: WEBUI_ROOT/models/Stable-diffusion"
    )
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--only", choices=["sd1", "sd2v", "sdxl"], default=None)
    args = parser.parse_args(argv)
    out_dir = args.out_dir or args.webui_root / "models" / "Stable-diffusion"

    # The hub cache must answer offline; the tiny repositories are written before the models are built.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    write_clip_repo(TINY_CLIP_REPO, tiny_clip_config())

    if args.only in (None, "sd1"):
        sys.path.insert(0, str(args.webui_root / "repositories" / "stable-diffusion-stability-ai"))
        config = sd1_config()
        model = build(config, args.seed)
        perturb(model, torch.Generator().manual_seed(args.seed))
        save(model, config, out_dir / "tiny-sd1.safetensors")

    if args.only in (None, "sd2v"):
        sys.path.insert(0, str(args.webui_root / "repositories" / "stable-diffusion-stability-ai"))
        write_tiny_open_clip_repo(args.seed, torch.Generator().manual_seed(args.seed + 1))  # as SDXL's
        config = sd2v_config()
        model = build(config, args.seed + 2)
        perturb(model, torch.Generator().manual_seed(args.seed + 2))
        save(model, config, out_dir / "tiny-sd2v.safetensors")

    if args.only in (None, "sdxl"):
        sys.path.insert(0, str(args.webui_root / "repositories" / "generative-models"))
        generator = torch.Generator().manual_seed(args.seed + 1)
        write_tiny_open_clip_repo(args.seed, generator)
        config = sdxl_config()
        model = build(config, args.seed)
        perturb(model, generator)
        save(model, config, out_dir / "tiny-sdxl.safetensors")


if __name__ == "__main__":
    main()
