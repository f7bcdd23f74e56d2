"""Start a real WebUI v1.10.x (CPU, loopback only) with this extension linked into extensions/.

Runs only when WEBUI_ROOT points at a prepared install (see tests/e2e/README.md); run with that
install's Python: ``$WEBUI_ROOT/venv/bin/python -m pytest tests/e2e``.
"""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path[:0] = [str(HERE), str(REPO)]


def _root() -> Path:
    root = os.environ.get("WEBUI_ROOT")
    if not root:
        pytest.skip("WEBUI_ROOT is not set: the end-to-end tests need a prepared WebUI (tests/e2e/README.md)")
    path = Path(root)
    if not (path / "launch.py").exists():
        pytest.skip(f"WEBUI_ROOT={root} has no launch.py")
    pytest.importorskip("webuiapi", reason="run the e2e tests with the WebUI's venv, which has webuiapi")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _link_extension(root: Path) -> None:
    link = root / "extensions" / "guided-synthesis"
    if link.is_symlink() and link.resolve() == REPO:
        return
    if link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(REPO)


class Running:
    def __init__(self, webui):
        import webuiapi

        self.webui = webui
        self.url = webui.url
        self.api = webuiapi.WebUIApi(host="127.0.0.1", port=webui.port, sampler="Euler", steps=6)


def _start(ckpt: str):
    from smoke_webui import WebUI

    root = _root()
    _link_extension(root)
    webui = WebUI(root, ckpt=ckpt, port=_free_port())
    webui.start(timeout=600)
    return webui


def _serve(ckpt: str):
    webui = _start(ckpt)
    try:
        yield Running(webui)
    finally:
        webui.stop()


@pytest.fixture(scope="session")
def sd1():
    yield from _serve("tiny-sd1")


@pytest.fixture(scope="session")
def sd2v():
    yield from _serve("tiny-sd2v")


@pytest.fixture(scope="session")
def sdxl():
    yield from _serve("tiny-sdxl")
