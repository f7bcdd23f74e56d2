"""Build the Hugging Face cache entries the WebUI needs for its CLIP text encoders, with no download.

The WebUI (v1.10.1) builds the SD1 text encoder from ``openai/clip-vit-large-patch14``'s
``config.json`` and loads that repository's tokenizer files; the weights come from the checkpoint.
This script writes those files into the Hugging Face hub cache (``models--openai--clip-vit-large-patch14``
with ``refs/main``, ``snapshots/<commit>/`` and ``blobs/``), so the WebUI starts with
``HF_HUB_OFFLINE=1``:

- ``vocab.json`` / ``merges.txt`` are derived from the CLIP BPE merges file that the installed
  ``open_clip`` package ships (``bpe_simple_vocab_16e6.txt.gz``), the way CLIP's tokenizer derives
  its vocabulary: the 256 byte symbols, the same symbols with ``</w>``, one token per merge (the
  first 48 894 merges), then ``<|startoftext|>`` and ``<|endoftext|>`` (49 408 tokens).
- ``config.json`` holds the published architecture of clip-vit-large-patch14 (text and vision).

It is also a small library: ``make_tiny_checkpoints.py`` uses :func:`write_hf_repo` and
:func:`clip_tokenizer_files` to publish the narrow text encoders of the tiny checkpoints.

Run it with the WebUI's virtualenv (it needs ``open_clip`` and ``huggingface_hub``)::

    $WEBUI_ROOT/venv/bin/python tests/e2e/prepare_clip_cache.py
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import shutil
from pathlib import Path

CLIP_L_REPO = "openai/clip-vit-large-patch14"
N_MERGES = 49152 - 256 - 2  # CLIP keeps the first 48 894 merges of its BPE file
START, END = "<|startoftext|>", "<|endoftext|>"


def hub_cache_dir() -> Path:
    """The hub cache directory Hugging Face libraries read (HF_HUB_CACHE, HF_HOME/hub or the default)."""
    try:
        from huggingface_hub import constants

        return Path(constants.HF_HUB_CACHE)
    except ImportError:
        if os.environ.get("HF_HUB_CACHE"):
            return Path(os.environ["HF_HUB_CACHE"])
        home = os.environ.get("HF_HOME") or os.path.join(
            os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface"
        )
        return Path(home) / "hub"


def byte_symbols() -> list[str]:
    """The printable stand-in character for each of the 256 byte values, in CLIP's vocabulary order.

    Bytes that are printable Latin-1 characters stand for themselves and come first (in byte order);
    the remaining bytes follow, mapped in byte order to the code points 256, 257, ...
    """
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    others = [b for b in range(256) if b not in set(printable)]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(others))]


def open_clip_bpe_path() -> Path:
    import open_clip

    path = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    if not path.is_file():
        raise FileNotFoundError(f"open_clip does not ship {path.name} at {path}")
    return path


def read_merges(bpe_path: Path | None = None) -> list[str]:
    """The merge lines CLIP uses ("a b" pairs), skipping the file's header line."""
    with gzip.open(bpe_path or open_clip_bpe_path()) as f:
        lines = f.read().decode("utf-8").split("\n")
    merges = lines[1 : N_MERGES + 1]
    if len(merges) != N_MERGES or any(len(m.split()) != 2 for m in merges):
        raise ValueError("unexpected BPE merges file layout")
    return merges


def clip_vocab(merges: list[str]) -> dict[str, int]:
    symbols = byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m.split()) for m in merges] + [START, END]
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != 49408:
        raise ValueError(f"expected 49408 distinct tokens, got {len(vocab)}")
    return vocab


def clip_tokenizer_files(bpe_path: Path | None = None) -> dict[str, bytes]:
    """vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json for CLIPTokenizer."""
    merges = read_merges(bpe_path)
    vocab = clip_vocab(merges)
    # Plain strings: CLIPTokenizer wraps them in AddedToken(lstrip=False, rstrip=False) itself.
    special = {"bos_token": START, "eos_token": END, "unk_token": END, "pad_token": END}
    tokenizer_config = {
        **special,
        "add_prefix_space": False,
        "do_lower_case": True,
        "errors": "replace",
        "model_max_length": 77,
        "name_or_path": CLIP_L_REPO,
        "special_tokens_map_file": "./special_tokens_map.json",
        "tokenizer_class": "CLIPTokenizer",
    }
    return {
        "vocab.json": json.dumps(vocab, ensure_ascii=False).encode("utf-8"),
        "merges.txt": ("#version: 0.2\n" + "\n".join(merges) + "\n").encode("utf-8"),
        "tokenizer_config.json": _json(tokenizer_config),
        "special_tokens_map.json": _json(special),
    }


def clip_text_config(
    hidden_size: int = 768,
    num_hidden_layers: int = 12,
    num_attention_heads: int = 12,
    intermediate_size: int = 3072,
    projection_dim: int = 768,
) -> dict:
    return {
        "model_type": "clip_text_model",
        "vocab_size": 49408,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "max_position_embeddings": 77,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-05,
        "attention_dropout": 0.0,
        "dropout": 0.0,
        "initializer_range": 0.02,
        "initializer_factor": 1.0,
        "projection_dim": projection_dim,
        # The published config carries these ids; CLIP's pooled output uses the argmax token anyway.
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 1,
    }


def clip_vision_config(
    hidden_size: int = 1024,
    num_hidden_layers: int = 24,
    num_attention_heads: int = 16,
    intermediate_size: int = 4096,
    projection_dim: int = 768,
    image_size: int = 224,
    patch_size: int = 14,
) -> dict:
    return {
        "model_type": "clip_vision_model",
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "num_channels": 3,
        "image_size": image_size,
        "patch_size": patch_size,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-05,
        "attention_dropout": 0.0,
        "dropout": 0.0,
        "initializer_range": 0.02,
        "initializer_factor": 1.0,
        "projection_dim": projection_dim,
    }


def clip_model_config(text: dict, vision: dict, projection_dim: int) -> dict:
    return {
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "initializer_factor": 1.0,
        "logit_scale_init_value": 2.6592,
        "projection_dim": projection_dim,
        "text_config": text,
        "vision_config": vision,
        "torch_dtype": "float32",
    }


def clip_vit_large_patch14_config() -> dict:
    return clip_model_config(clip_text_config(), clip_vision_config(), projection_dim=768)


def _json(obj) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def write_hf_repo(repo_id: str, files: dict[str, bytes], cache_dir: Path | None = None) -> Path:
    """Write ``files`` as one snapshot of model repository ``repo_id`` in the hub cache layout.

    Blobs are named by their sha256, snapshot entries are relative symlinks to them (as
    huggingface_hub writes them), the snapshot name is derived from the contents and ``refs/main``
    points at it; other snapshots and blobs of the repository are removed. Returns the snapshot folder.
    """
    cache_dir = Path(cache_dir) if cache_dir else hub_cache_dir()
    repo_dir = cache_dir / ("models--" + repo_id.replace("/", "--"))
    digest = hashlib.sha1()
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha256(files[name]).digest())
    commit = digest.hexdigest()
    snapshot = repo_dir / "snapshots" / commit
    (repo_dir / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = repo_dir / "blobs" / hashlib.sha256(data).hexdigest()
        if not blob.exists():
            tmp = blob.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(blob)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    for old in (repo_dir / "snapshots").iterdir():  # earlier versions written by this function
        if old.name != commit:
            shutil.rmtree(old)
    keep = {hashlib.sha256(data).hexdigest() for data in files.values()}
    for blob in (repo_dir / "blobs").iterdir():
        if blob.name not in keep:
            blob.unlink()
    (repo_dir / "refs").mkdir(exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return snapshot


def write_clip_repo(repo_id: str, config: dict, cache_dir: Path | None = None) -> Path:
    """A CLIP repository with the given config.json and CLIP's tokenizer files (no weights)."""
    files = clip_tokenizer_files()
    files["config.json"] = _json(config)
    return write_hf_repo(repo_id, files, cache_dir)


def check_tokenizer(snapshot: Path) -> None:
    """Load the written files with transformers and compare with open_clip's own tokenizer."""
    import open_clip
    from transformers import CLIPTokenizer

    tok = CLIPTokenizer.from_pretrained(str(snapshot))
    text = "a red barn, under a blue sky!"
    ours = tok(text)["input_ids"]
    ref = open_clip.tokenize([text])[0]
    ref = ref[: int((ref != 0).sum())].tolist()
    if ours != ref:
        raise AssertionError(f"tokenizer mismatch: {ours} vs {ref}")
    if tok.model_max_length != 77 or len(tok) != 49408:
        raise AssertionError("unexpected tokenizer size")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=None, help="hub cache (default: HF_HUB_CACHE)")
    parser.add_argument("--no-check", action="store_true", help="skip the tokenizer round-trip check")
    args = parser.parse_args(argv)
    snapshot = write_clip_repo(CLIP_L_REPO, clip_vit_large_patch14_config(), args.cache_dir)
    if not args.no_check:
        check_tokenizer(snapshot)
    print(f"{CLIP_L_REPO}: {snapshot}")


if __name__ == "__main__":
    main()
