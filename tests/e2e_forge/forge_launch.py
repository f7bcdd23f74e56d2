"""Start the offline CPU Forge with this extension linked into extensions/, and stop it.

The process handling is the WebUI's (:class:`smoke_webui.WebUI`: own process group, log file, waiting on
the log, killing the group); what differs is Forge's command line and that Forge loads the checkpoint
on the first generation, not at start-up, so readiness is "Startup time:" and a first request warms it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "e2e")]
from smoke_webui import HOST, WebUI, link_extension  # noqa: E402, F401 - link_extension: for conftest

CHECKPOINT = "guided-forge-sd15"


def forge_root() -> Path:
    return Path(os.environ.get("FORGE_ROOT", "/work/forge"))


def forge_command(root: Path, port: int, extra: list[str] | None = None) -> list[str]:
    """Forge offline on the CPU, float32 (``--always-cpu`` picks float32 for every model)."""
    return [
        str(root / "venv" / "bin" / "python"),
        "launch.py",
        "--always-cpu",
        "--skip-prepare-environment",
        "--skip-install",
        "--skip-torch-cuda-test",
        "--skip-python-version-check",
        "--skip-version-check",
        "--api",
        "--port",
        str(port),
        "--server-name",
        HOST,
        "--no-download-sd-model",
        "--no-hashing",
        "--ckpt",
        str(Path("models") / "Stable-diffusion" / f"{CHECKPOINT}.safetensors"),
        *(extra or []),
    ]


class Forge(WebUI):
    READY = ("Startup time:",)  # Forge loads the checkpoint on the first generation

    def __init__(self, root: Path, port: int, log_path: Path | None = None, nice: int = 10):
        super().__init__(root, port=port, log_path=log_path, nice=nice)
        ui_config = self.cmd[self.cmd.index("--ui-config-file") + 1]
        self.cmd = forge_command(root, port, ["--ui-config-file", ui_config])
        if nice:
            self.cmd = ["nice", "-n", str(nice), *self.cmd]
