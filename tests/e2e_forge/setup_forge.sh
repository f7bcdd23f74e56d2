#!/usr/bin/env bash
# Prepare an offline, CPU-only Forge (lllyasviel/stable-diffusion-webui-forge) at $FORGE_ROOT for the
# Forge end-to-end tests.
#
# 1. Extracts Forge at FORGE_COMMIT and its helper repositories (huggingface_guess, BLIP, the assets,
#    openai/CLIP) from bare git mirrors under $MIRROR (owner+name/repo, as the workplace's `fetch`
#    leaves them) into $FORGE_ROOT. That code is never part of our repository.
# 2. Creates $FORGE_ROOT/venv (Python 3.11): torch 2.13.0+cpu pinned in every pip call, a CPU-usable
#    torchvision, Forge's requirements_versions.txt (setuptools re-pinned), CLIP, our runtime
#    dependencies and the test tools; patches torchvision's fake-kernel registrations.
# 3. Writes the offline CLIP tokenizer files and the test checkpoint (tests/e2e_forge/make_checkpoint.py).
#
# Usage: FORGE_ROOT=/work/forge MIRROR=/work/.mirror bash tests/e2e_forge/setup_forge.sh
# Env:   PYTHON (python3.11), TORCH_VERSION (2.13.0), TORCHVISION_VERSION (0.28.0), SKIP_EXTRACT=1,
#        SKIP_CHECKPOINTS=1.
set -euo pipefail

FORGE_ROOT=${FORGE_ROOT:-/work/forge}
MIRROR=${MIRROR:-/work/.mirror}
PYTHON=${PYTHON:-python3.11}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
TORCHVISION_VERSION=${TORCHVISION_VERSION:-0.28.0}
FORGE_COMMIT=dfdcbab685e57677014f05a3309b48cc87383167          # version f2.0.1v1.10.1
HF_GUESS_COMMIT=84826248b49bb7ca754c73293299c4d4e23a548d        # modules/launch_utils.py pins these
BLIP_COMMIT=48211a1594f1321b00f14c9f7a5b4813144b2fb9
ASSETS_COMMIT=6f7db241d2f8ba7457bac5ca9753331f0c266917
CLIP_COMMIT=d50d76daa670286dd6cacf3bcd80b5e4823fc8e1
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
NICE="nice -n 10"

log() { printf '\n== %s\n' "$*"; }

extract() {  # extract GIT_DIR COMMIT DEST: the tree at COMMIT, skipping blobs a mirror lacks
    local gd=$1 c=$2 dest=$3
    mkdir -p "$dest"
    git --git-dir="$gd" ls-tree -r -z "$c" | while IFS= read -r -d '' line; do
        local meta=${line%%$'\t'*} path=${line#*$'\t'}
        set -- $meta   # mode type sha
        [ "$2" = blob ] || continue
        mkdir -p "$dest/$(dirname "$path")"
        if [ "$1" = 120000 ]; then
            ln -sfn "$(git --git-dir="$gd" cat-file blob "$3")" "$dest/$path" 2>/dev/null || echo "MISSING $path"
        else
            git --git-dir="$gd" cat-file blob "$3" > "$dest/$path" 2>/dev/null \
                || { rm -f "$dest/$path"; echo "MISSING $path"; continue; }
            if [ "$1" = 100755 ]; then chmod +x "$dest/$path"; fi
        fi
    done
}

if [ -z "${SKIP_EXTRACT:-}" ]; then
    log "extracting Forge and its helper repositories into $FORGE_ROOT"
    R=$FORGE_ROOT/repositories
    extract "$MIRROR/lllyasviel+stable-diffusion-webui-forge/repo" $FORGE_COMMIT "$FORGE_ROOT"
    extract "$MIRROR/lllyasviel+huggingface_guess/repo" $HF_GUESS_COMMIT "$R/huggingface_guess"
    extract "$MIRROR/salesforce+BLIP/repo" $BLIP_COMMIT "$R/BLIP"
    extract "$MIRROR/AUTOMATIC1111+stable-diffusion-webui-assets/repo" $ASSETS_COMMIT "$R/stable-diffusion-webui-assets"
    extract "$MIRROR/openai+CLIP/repo" $CLIP_COMMIT "$R/CLIP"
fi
for p in launch.py requirements_versions.txt backend/loader.py repositories/huggingface_guess/huggingface_guess \
         repositories/BLIP repositories/stable-diffusion-webui-assets repositories/CLIP/setup.py; do
    [ -e "$FORGE_ROOT/$p" ] || { echo "missing $FORGE_ROOT/$p" >&2; exit 1; }
done

log "virtualenv"
[ -x "$FORGE_ROOT/venv/bin/python" ] || "$PYTHON" -m venv "$FORGE_ROOT/venv"
VPY="$FORGE_ROOT/venv/bin/python"
PIP="$NICE $VPY -m pip"
$PIP install -q -U pip

# setuptools: requirements pin 69.5.1, torch 2.13 needs >= 77.0.3, pytorch_lightning 1.9.4 still
# imports pkg_resources (gone in setuptools 81). joblib: imported by Forge, not in its requirements.
CONSTRAINTS=$(mktemp)
REQS=$(mktemp)
trap 'rm -f "$CONSTRAINTS" "$REQS"' EXIT
{
    echo "torch==$TORCH_VERSION"
    echo "setuptools>=77.0.3,<81"
    grep -E '^[A-Za-z0-9_.-]+==' "$FORGE_ROOT/requirements_versions.txt" | sed 's/ *#.*//' | grep -v -E '^(setuptools|torch)=='
} > "$CONSTRAINTS"
grep -v -E '^(setuptools|torch)([= ]|$)' "$FORGE_ROOT/requirements_versions.txt" | sed 's/ *#.*//' > "$REQS"

log "torch $TORCH_VERSION (CPU wheel) and torchvision $TORCHVISION_VERSION (--no-deps)"
$PIP install -c "$CONSTRAINTS" "setuptools>=77.0.3,<81" wheel "torch==$TORCH_VERSION"
$PIP install --no-deps "torchvision==$TORCHVISION_VERSION"

log "Forge requirements_versions.txt"
$PIP install -c "$CONSTRAINTS" -r "$REQS" joblib

log "openai/CLIP (what launch_utils installs as the 'clip' package)"
$PIP install -c "$CONSTRAINTS" --no-deps --no-build-isolation "$FORGE_ROOT/repositories/CLIP"

log "our runtime dependencies and the test tools"
mapfile -t RUNTIME < <("$VPY" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' "$REPO/pyproject.toml")
$PIP install -c "$CONSTRAINTS" "${RUNTIME[@]}" playwright==1.65.2 pytest==9.2.0 requests

log "torchvision: fake-kernel registrations only when its C++ ops are loaded"
# PyPI's torchvision is CUDA-linked; on a CPU box its _C.so does not load and the unconditional
# register_fake("torchvision::nms") raises at import (see tests/e2e/setup_webui.sh).
TVMETA=$("$VPY" -c 'import importlib.util, os; print(os.path.join(importlib.util.find_spec("torchvision").submodule_search_locations[0], "_meta_registrations.py"))')
sed -i -E 's/^@torch\.library\.register_fake\(("torchvision::[A-Za-z_]+")\)$/@(torch.library.register_fake(\1) if torchvision.extension._has_ops() else (lambda fn: fn))/' "$TVMETA"
"$VPY" -c 'import torchvision, torchvision.transforms.functional; print("torchvision", torchvision.__version__, "imports")'

if [ -z "${SKIP_CHECKPOINTS:-}" ]; then
    log "test checkpoint"
    HF_HUB_OFFLINE=1 FORGE_ROOT="$FORGE_ROOT" $NICE "$VPY" "$HERE/make_checkpoint.py"
fi

log "done; the tests: FORGE_ROOT=$FORGE_ROOT $VPY -m pytest $HERE -q"
