"""Make the Forge e2e tests' SD 1.5-architecture checkpoint with random weights.

Forge recognises a checkpoint by its state-dict keys (``huggingface_guess``) and builds the VAE and the
text encoder from its bundled SD 1.5 configs, so those two keep their full size (VAE 83.7 M, CLIP ViT-L
text encoder 123 M parameters). The UNet is built from the detected keys, so it can be narrow: SD 1.5's
320 base channels, 8 heads and 768-wide context (what detection checks) but two levels (320, 640) with
one res block and one transformer block each, 1/20 of SD 1.5's UNet. It is made by Forge's own classes
(imported from ``$FORGE_ROOT``) and saved in float16 in the original layout
(``model.diffusion_model.*``, ``first_stage_model.*`` in diffusers keys, which Forge converts,
``cond_stage_model.transformer.text_model.*``).

Weights: seeded random init, then every norm layer gets weight 1 + noise and every all-zero parameter
small noise (``tests/e2e/make_tiny_checkpoints.perturb``), so gradients through the models are non-zero.

    FORGE_ROOT=/work/forge $FORGE_ROOT/venv/bin/python tests/e2e_forge/make_checkpoint.py
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "e2e"))
from make_tiny_checkpoints import perturb  # noqa: E402

NAME = "guided-forge-sd15.safetensors"
UNET_CONFIG = dict(
    in_channels=4,
    out_channels=4,
    model_channels=320,
    num_res_blocks=1,
    channel_mult=(1, 2),
    num_heads=8,
    num_head_channels=-1,
    use_spatial_transformer=True,
    transformer_depth=[1, 1],
    transformer_depth_output=[1, 1, 1, 1],
    transformer_depth_middle=1,
    context_dim=768,
    use_linear_in_transformer=False,
)


def build_state_dict(forge_root: Path, seed: int) -> dict[str, torch.Tensor]:
    sys.path[:0] = [str(forge_root), str(forge_root / "packages_3rdparty")]  # Forge's launcher does this
    sys.argv = [sys.argv[0], "--always-cpu"]  # backend.args reads the command line at import
    from backend.nn.unet import IntegratedUNet2DConditionModel
    from backend.nn.vae import IntegratedAutoencoderKL
    from transformers import CLIPTextConfig, CLIPTextModel

    configs = forge_root / "backend/huggingface/runwayml/stable-diffusion-v1-5"
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    parts = {
        "model.diffusion_model.": IntegratedUNet2DConditionModel(**UNET_CONFIG),
        "first_stage_model.": IntegratedAutoencoderKL.from_config(
            IntegratedAutoencoderKL.load_config(configs / "vae")
        ),
        "cond_stage_model.transformer.": CLIPTextModel(
            CLIPTextConfig.from_pretrained(configs / "text_encoder")
        ),
    }
    state = {}
    for prefix, module in parts.items():
        perturb(module, generator)
        for key, value in module.state_dict().items():
            state[prefix + key] = value.detach().to(torch.float16).contiguous()
    return state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--forge-root", default=os.environ.get("FORGE_ROOT", "/work/forge"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    from safetensors.torch import save_file

    root = Path(args.forge_root)
    out = root / "models" / "Stable-diffusion" / NAME
    out.parent.mkdir(parents=True, exist_ok=True)
    state = build_state_dict(root, args.seed)
    save_file(state, str(out))
    count = sum(v.numel() for k, v in state.items() if k.startswith("model.diffusion_model."))
    print(f"wrote {out} ({out.stat().st_size / 2**20:.0f} MB, UNet {count / 1e6:.1f} M parameters)")


if __name__ == "__main__":
    main()
