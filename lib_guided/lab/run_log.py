"""Training log: one line per event, with seconds since the run started, to stdout and a file."""

from __future__ import annotations

import time
from pathlib import Path


class RunLog:
    def __init__(self, path: str | Path | None):
        self.start = time.time()
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def elapsed(self) -> float:
        return time.time() - self.start

    def __call__(self, message: str) -> None:
        line = f"[{self.elapsed():8.1f}s] {message}"
        print(line, flush=True)
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
