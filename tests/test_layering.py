"""The runtime never imports the dev-only packages (lab, bench); only the WebUI adapter imports the
WebUI (``modules``) or gradio, and only the Forge adapter imports Forge (``backend``): checked on
the import statements of every module."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lib_guided"
DEV_ONLY = ("lab", "bench")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def runtime_modules() -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if p.relative_to(PACKAGE).parts[0] not in DEV_ONLY]


@pytest.mark.parametrize("path", runtime_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_runtime_module_imports_no_dev_package(path):
    dev = [m for m in imported_modules(path) if m.split(".")[:2] in (["lib_guided", d] for d in DEV_ONLY)]
    assert dev == [], f"{path.relative_to(PACKAGE)} imports {dev}"


@pytest.mark.parametrize(
    "path",
    [p for p in PACKAGE.rglob("*.py") if "webui" not in p.parts],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_only_the_webui_adapter_imports_the_webui(path):
    host = [m for m in imported_modules(path) if m.split(".")[0] in ("modules", "gradio")]
    assert host == [], f"{path.relative_to(PACKAGE)} imports {host}"


@pytest.mark.parametrize(
    "path",
    [p for p in PACKAGE.rglob("*.py") if "forge" not in p.parts],
    ids=lambda p: str(p.relative_to(PACKAGE)),
)
def test_only_the_forge_adapter_imports_forge(path):
    forge = [m for m in imported_modules(path) if m.split(".")[0] in ("backend", "modules_forge")]
    assert forge == [], f"{path.relative_to(PACKAGE)} imports {forge}"


def test_no_relative_imports_anywhere():
    relative = [
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        if any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(ast.parse(p.read_text())))
    ]
    assert relative == []


def test_the_check_sees_an_offending_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from lib_guided.lab.world import make_scene\n    import modules.shared\n")
    names = imported_modules(bad)
    assert "lib_guided.lab.world" in names and "modules.shared" in names
