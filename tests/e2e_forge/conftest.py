"""Start a real Forge (CPU, loopback only) with this extension linked into extensions/.

Runs only when FORGE_ROOT points at an install prepared by ``setup_forge.sh``; run with that install's
Python: ``FORGE_ROOT=DIR $FORGE_ROOT/venv/bin/python -m pytest tests/e2e_forge``.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(HERE.parent / "e2e"), str(REPO)]


def _root() -> Path:
    root = os.environ.get("FORGE_ROOT")
    if not root:
        pytest.skip(
            "FORGE_ROOT is not set: the Forge tests need a Forge prepared by tests/e2e_forge/setup_forge.sh"
        )
    path = Path(root)
    if not (path / "backend" / "loader.py").exists():
        pytest.skip(f"FORGE_ROOT={root} is not a Forge checkout (no backend/loader.py)")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def forge():
    from forge_client import ForgeClient
    from forge_launch import Forge, link_extension

    root = _root()
    link_extension(root)
    server = Forge(root, port=_free_port())
    server.start(timeout=600)
    try:
        client = ForgeClient(server)
        client.txt2img(steps=1)  # Forge loads the checkpoint on the first generation
        yield client
    finally:
        server.stop()
