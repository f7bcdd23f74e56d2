#!/usr/bin/env bash
# One-shot GPU check (about 5-8 minutes on one recent NVIDIA GPU): the half-precision tests on real-size
# random SD 1.5 / SDXL UNet+VAE at 512² and 1024², then the benchmark on the GPU (plain sampling and
# each decoder, 20 and 50 steps). Figures land in $GPU_OUT (default docs/bench/gpu): half.json, bench.json.
# Usage, from the repository root, in a venv with the test requirements and a CUDA torch:
#   bash tests/gpu/run.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export GPU_OUT=${GPU_OUT:-docs/bench/gpu}
mkdir -p "$GPU_OUT"
python - <<'PY'
import torch
assert torch.cuda.is_available(), "tests/gpu/run.sh needs a CUDA GPU"
print("GPU:", torch.cuda.get_device_name(), "| torch", torch.__version__, "| CUDA", torch.version.cuda)
PY
echo "== half precision (SD 1.5 and SDXL, 512² and 1024²)"
timeout 300 python -m pytest -q tests/gpu -p no:cacheprovider
echo "== bench on the GPU"
for steps in 20 50; do
  timeout 240 python -m lib_guided.bench --device cuda --arch sd15 --sizes 512 --steps "$steps" --repeats 2 \
    --decoders full linear-anchored --solvers aidi-a --inversion-steps 10 --out "$GPU_OUT/sd15-$steps"
done
timeout 240 python -m lib_guided.bench --device cuda --arch sdxl --sizes 1024 --steps 20 --repeats 1 \
  --decoders full linear-anchored --solvers aidi-a --inversion-steps 10 --out "$GPU_OUT/sdxl-20"
echo "figures in $GPU_OUT"
