"""Fitted linear decoders per checkpoint: in memory, and optionally as small JSON files in a folder.

A fit costs a handful of full decodes; a checkpoint's coefficients never change, so fit once per
checkpoint (keyed by a string the caller provides, e.g. the WebUI's checkpoint hash) and reuse.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path

from lib_guided.gradop.decoders.linear import LinearLatentDecoder

FORMAT = "lib_guided.gradop.decoders.linear/1"


class LinearDecoderCache:
    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._memory: dict[str, LinearLatentDecoder] = {}

    def path_for(self, key: str) -> Path | None:
        """The file for ``key``: a readable prefix plus a digest, so odd keys cannot collide or escape."""
        if self.folder is None:
            return None
        readable = re.sub(r"[^A-Za-z0-9._-]+", "_", key)[:40]
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
        return self.folder / f"linear-decoder-{readable}-{digest}.json"

    def get(self, key: str) -> LinearLatentDecoder | None:
        if key in self._memory:
            return self._memory[key]
        path = self.path_for(key)
        if path is None or not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
            if data.get("format") != FORMAT or data.get("key") != key:
                return None
            decoder = LinearLatentDecoder.from_coefficients(data)
        except (OSError, ValueError, KeyError, TypeError):
            return None  # a damaged file is refitted, not fatal
        self._memory[key] = decoder
        return decoder

    def put(self, key: str, decoder: LinearLatentDecoder) -> None:
        self._memory[key] = decoder
        path = self.path_for(key)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        # float32 values written as Python floats round-trip exactly through JSON
        tmp.write_text(json.dumps({"format": FORMAT, "key": key, **decoder.coefficients()}, indent=1))
        tmp.replace(path)

    def get_or_fit(self, key: str | None, fit: Callable[[], LinearLatentDecoder]) -> LinearLatentDecoder:
        """The cached decoder for ``key``, else ``fit()`` (stored unless ``key`` is None)."""
        if key is None:
            return fit()
        decoder = self.get(key)
        if decoder is None:
            decoder = fit()
            self.put(key, decoder)
        return decoder

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None
