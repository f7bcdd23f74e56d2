#!/usr/bin/env bash
# Prepare an offline, CPU-only AUTOMATIC1111 WebUI v1.10.1 at $WEBUI_ROOT for the end-to-end tests.
#
# Precondition (not done here, see tests/e2e/README.md, step 1): the WebUI source at tag v1.10.1 is
# extracted at $WEBUI_ROOT and its helper repositories under $WEBUI_ROOT/repositories/
# (stable-diffusion-stability-ai, generative-models, k-diffusion, BLIP,
# stable-diffusion-webui-assets, CLIP). That code is never part of our repository.
#
# This script: creates $WEBUI_ROOT/venv (Python 3.11), installs torch 2.13.0+cpu, a CPU-usable
# torchvision, the WebUI's requirements_versions.txt (setuptools re-pinned), openai/CLIP, our
# extension's requirements and the test tools; patches torchvision; installs Debian chromium (when
# root and missing); writes the offline CLIP files into the Hugging Face cache; makes the tiny
# checkpoints; sets the live-preview method to one that needs no download.
#
# Usage: WEBUI_ROOT=/work/webui bash tests/e2e/setup_webui.sh
# Env:   PYTHON (default python3.11), TORCH_VERSION (2.13.0), TORCHVISION_VERSION (0.28.0),
#        SKIP_CHROMIUM=1, SKIP_CHECKPOINTS=1.
set -euo pipefail

WEBUI_ROOT=${WEBUI_ROOT:-/work/webui}
PYTHON=${PYTHON:-python3.11}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCHVISION_VERSION=${TORCHVISION_VERSION:-0.28.0}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
NICE="nice -n 10"

log() { printf '\n== %s\n' "$*"; }

log "checking the WebUI tree at $WEBUI_ROOT"
for p in launch.py requirements_versions.txt modules/launch_utils.py \
         repositories/stable-diffusion-stability-ai/ldm repositories/generative-models/sgm \
         repositories/k-diffusion/k_diffusion repositories/BLIP repositories/stable-diffusion-webui-assets \
         repositories/CLIP/setup.py; do
    [ -e "$WEBUI_ROOT/$p" ] || { echo "missing $WEBUI_ROOT/$p (extract the WebUI first: README step 1)" >&2; exit 1; }
done

log "virtualenv"
[ -x "$WEBUI_ROOT/venv/bin/python" ] || "$PYTHON" -m venv "$WEBUI_ROOT/venv"
VPY="$WEBUI_ROOT/venv/bin/python"
PIP="$NICE $VPY -m pip"
$PIP install -q -U pip

# torch is pinned in every pip call: letting pip resolve another torch pulls GBs of CUDA wheels.
# setuptools: requirements_versions.txt pins 69.5.1, torch 2.13 needs >= 77.0.3, lightning (via
# pytorch_lightning 1.9.4) still imports pkg_resources, which setuptools 81 removed.
CONSTRAINTS=$(mktemp)
REQS=$(mktemp)
trap 'rm -f "$CONSTRAINTS" "$REQS"' EXIT
{
    echo "torch==$TORCH_VERSION"
    echo "setuptools>=77.0.3,<81"
    grep -E '^[A-Za-z0-9_.-]+==' "$WEBUI_ROOT/requirements_versions.txt" | grep -v -E '^(setuptools|torch)=='
} > "$CONSTRAINTS"
grep -v -E '^setuptools' "$WEBUI_ROOT/requirements_versions.txt" > "$REQS"

log "torch $TORCH_VERSION (CPU wheel) and torchvision $TORCHVISION_VERSION (--no-deps)"
$PIP install -c "$CONSTRAINTS" "setuptools>=77.0.3,<81" wheel "torch==$TORCH_VERSION"
$PIP install --no-deps "torchvision==$TORCHVISION_VERSION"

log "WebUI requirements_versions.txt"
$PIP install -c "$CONSTRAINTS" -r "$REQS"

log "openai/CLIP from repositories/CLIP (what launch_utils installs as the 'clip' package)"
$PIP install -c "$CONSTRAINTS" --no-deps --no-build-isolation "$WEBUI_ROOT/repositories/CLIP"

log "our requirements and the test tools (playwright: the Python package only, no browser download)"
# the runtime dependencies as pyproject.toml declares them (the WebUI already satisfies all but OpenCV)
mapfile -t RUNTIME < <("$VPY" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' "$REPO/pyproject.toml")
$PIP install -c "$CONSTRAINTS" "${RUNTIME[@]}" \
    webuiapi==0.9.17 playwright==1.65.2 pytest==9.2.0 requests

log "torchvision: fake-kernel registrations only when its C++ ops are loaded"
# PyPI's torchvision is CUDA-linked: its _C.so does not load on a CPU box (libc10_cuda.so), so
# torchvision::nms is not defined and `@torch.library.register_fake("torchvision::nms")` raises
# at import. Make those two decorators conditional, as the register_meta ones above them are.
TVMETA=$("$VPY" -c 'import importlib.util, os; print(os.path.join(importlib.util.find_spec("torchvision").submodule_search_locations[0], "_meta_registrations.py"))')
sed -i -E 's/^@torch\.library\.register_fake\(("torchvision::[A-Za-z_]+")\)$/@(torch.library.register_fake(\1) if torchvision.extension._has_ops() else (lambda fn: fn))/' "$TVMETA"
"$VPY" -c 'import torchvision, torchvision.transforms.functional; print("torchvision", torchvision.__version__, "imports")'
"$VPY" -m pip check

if [ -z "${SKIP_CHROMIUM:-}" ] && ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        log "Debian chromium"
        $NICE apt-get update
        DEBIAN_FRONTEND=noninteractive $NICE apt-get install -y chromium
    else
        echo "chromium missing: run 'sudo apt-get install -y chromium'" >&2
    fi
fi

log "offline CLIP files in the Hugging Face cache"
HF_HUB_OFFLINE=1 $NICE "$VPY" "$HERE/prepare_clip_cache.py"

if [ -z "${SKIP_CHECKPOINTS:-}" ]; then
    log "tiny checkpoints"
    HF_HUB_OFFLINE=1 WEBUI_ROOT="$WEBUI_ROOT" $NICE "$VPY" "$HERE/make_tiny_checkpoints.py"
fi

log "WebUI settings: live previews by 'Approx cheap' (the default 'Approx NN' downloads a model for SDXL)"
"$VPY" - "$WEBUI_ROOT/config.json" <<'EOF'
import json, os, sys
path = sys.argv[1]
config = json.load(open(path)) if os.path.exists(path) else {}
config["show_progress_type"] = "Approx cheap"
json.dump(config, open(path, "w"), indent=4)
EOF

log "done; smoke test: WEBUI_ROOT=$WEBUI_ROOT $VPY $HERE/smoke_webui.py --screenshot /tmp/webui.png"
