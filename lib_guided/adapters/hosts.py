"""Which host the script was loaded by, found once at import: AUTOMATIC1111's WebUI or Forge."""

from __future__ import annotations

import importlib.util

from lib_guided.adapters.webui.host import WEBUI, WebUIHost


def _found(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module without a spec
        return False


def current_host() -> WebUIHost:
    """Forge is the WebUI with ``modules_forge`` beside ``modules`` and its model code in ``backend``.
    Forks with ``modules_forge`` but the older ``ldm_patched`` backend (Forge Classic, reForge) are not
    supported yet: they get the WebUI host, and say so."""
    if not _found("modules_forge"):
        return WEBUI
    if _found("backend.diffusion_engine"):
        from lib_guided.adapters.forge.host import FORGE

        return FORGE
    print(
        "Guided Synthesis: this Forge fork (ldm_patched: Forge Classic or reForge) is not supported yet; "
        "loading the AUTOMATIC1111 adapter, which may fail"
    )
    return WEBUI
