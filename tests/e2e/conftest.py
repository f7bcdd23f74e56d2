"""Start a real WebUI v1.10.x (CPU, loopback only) with this extension linked into extensions/.

Runs only when WEBUI_ROOT points at a prepared install (see tests/e2e/README.md); run with that
install's Python: ``$WEBUI_ROOT/venv/bin/python -m pytest tests/e2e``.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
import tempfile
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


class Running:
    def __init__(self, webui):
        import webuiapi

        self.webui = webui
        self.url = webui.url
        self.api = webuiapi.WebUIApi(host="127.0.0.1", port=webui.port, sampler="Euler", steps=6)


def _start(ckpt: str):
    from smoke_webui import WebUI, link_extension

    root = _root()
    link_extension(root)
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


# Other extensions' public sources for the coexistence tests (tests/e2e/README.md, "Coexistence"): never
# committed here; found in $E2E_OTHER_EXTENSIONS, by default the folder ext_src beside $WEBUI_ROOT.
OTHER_EXTENSIONS = ("sd-webui-regional-prompter", "sd-dynamic-thresholding")


def _other_extensions_source(root: Path) -> Path:
    source = Path(os.environ.get("E2E_OTHER_EXTENSIONS") or root.parent / "ext_src")
    missing = [name for name in OTHER_EXTENSIONS if not (source / name / "scripts").is_dir()]
    if missing:
        names = ", ".join(missing)
        pytest.skip(f"{names} not found in {source} (set E2E_OTHER_EXTENSIONS; tests/e2e/README.md)")
    return source


@pytest.fixture(scope="session")
def sd1_with_others():
    """Tiny SD1 in a WebUI of its own whose extensions are ours, Regional Prompter and Dynamic Thresholding.

    A fresh ``--data-dir`` per session holds its extensions (ours linked, theirs copied: Regional Prompter
    writes its presets file into its own folder on every run, and Python its bytecode), config.json and
    outputs; ``--models-dir`` is the shared install's. ``$WEBUI_ROOT/extensions``, which the other
    fixtures use, is not touched.
    """
    from smoke_webui import WebUI

    root = _root()
    source = _other_extensions_source(root)
    data = Path(tempfile.mkdtemp(prefix="webui-data-others-"))
    try:
        extensions = data / "extensions"
        extensions.mkdir()
        (extensions / "guided-synthesis").symlink_to(REPO)
        for name in OTHER_EXTENSIONS:
            ignore = shutil.ignore_patterns(".git", "__pycache__")
            shutil.copytree(source / name, extensions / name, ignore=ignore)
        settings = root / "config.json"  # the install's settings ("Approx cheap" previews, see README step 6)
        if settings.exists():
            shutil.copyfile(settings, data / "config.json")
        extra = ["--data-dir", str(data), "--models-dir", str(root / "models")]
        webui = WebUI(root, ckpt="tiny-sd1", port=_free_port(), extra_args=extra)
        webui.start(timeout=600)
        try:
            yield Running(webui)
        finally:
            webui.stop()
    finally:
        (data / "extensions" / "guided-synthesis").unlink(missing_ok=True)  # the link first: never follow it
        shutil.rmtree(data, ignore_errors=True)
