"""A CLIP-style BPE tokenizer for the lab world's small vocabulary, written as plain files.

The files have CLIP's layout (``vocab.json``, ``merges.txt``), so ``transformers.CLIPTokenizer`` loads
them offline. Every vocabulary word is one token; any other text still splits into byte-level
characters, so unknown prompts never crash.
"""

from __future__ import annotations

import json
from pathlib import Path

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"
MAX_LENGTH = 20  # longest caption is 13 words + BOS + EOS; a little room for free-form prompts


def byte_alphabet() -> list[str]:
    """The 256 characters byte-level BPE uses for bytes: printable Latin-1 as is, the rest moved up."""
    printable = {*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)}
    table, shifted = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shifted)
            shifted += 1
    return [table[b] for b in range(256)]


def _apply_merges(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Plain BPE: repeatedly merge the adjacent pair with the lowest rank."""
    symbols = list(symbols)
    while len(symbols) > 1:
        pairs = [(ranks.get(p), i) for i, p in enumerate(zip(symbols, symbols[1:], strict=False))]
        pairs = [(r, i) for r, i in pairs if r is not None]
        if not pairs:
            break
        _, i = min(pairs)
        symbols[i : i + 2] = [symbols[i] + symbols[i + 1]]
    return symbols


def _word_symbols(word: str) -> list[str]:
    return [*word[:-1], word[-1] + END_OF_WORD]


def build_merges(words: list[str]) -> list[tuple[str, str]]:
    """Merges that assemble each word left to right, plus repairs until every word is one token."""
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}

    def add(pair):
        if pair not in ranks:
            ranks[pair] = len(merges)
            merges.append(pair)

    for word in words:
        symbols = _word_symbols(word)
        prefix = symbols[0]
        for sym in symbols[1:]:
            add((prefix, sym))
            prefix += sym
    # An earlier merge of another word can pre-empt this word's left-to-right path (e.g. "e d</w>"
    # before "re d</w>"); append merges joining the leftover pieces, which only fire afterwards.
    for _ in range(len(words) + 1):
        broken = [w for w in words if len(_apply_merges(_word_symbols(w), ranks)) > 1]
        if not broken:
            return merges
        for word in broken:
            pieces = _apply_merges(_word_symbols(word), ranks)
            add((pieces[0], pieces[1]))
    raise RuntimeError("could not make every word a single token")


def write_tokenizer_files(folder: str | Path, words: list[str], max_length: int = MAX_LENGTH) -> Path:
    """Write vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json."""
    words = sorted({w.lower() for w in words})
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    merges = build_merges(words)
    alphabet = byte_alphabet()
    tokens = alphabet + [c + END_OF_WORD for c in alphabet] + ["".join(pair) for pair in merges]
    vocab: dict[str, int] = {}
    for token in [*tokens, BOS, EOS]:
        vocab.setdefault(token, len(vocab))
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False, indent=0), encoding="utf-8")
    lines = ["#version: 0.2", *(f"{a} {b}" for a, b in merges)]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    specials = {"bos_token": BOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    config = {
        "tokenizer_class": "CLIPTokenizer",
        "model_max_length": max_length,
        "do_lower_case": True,
        "errors": "replace",
        "add_prefix_space": False,
        **specials,
    }
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(specials, indent=2), encoding="utf-8")
    return folder


def build_tokenizer(folder: str | Path, words: list[str], max_length: int = MAX_LENGTH):
    """Write the tokenizer files for ``words`` into ``folder`` and load them as a CLIPTokenizer."""
    from transformers import CLIPTokenizer

    write_tokenizer_files(folder, words, max_length)
    return CLIPTokenizer.from_pretrained(str(folder))
