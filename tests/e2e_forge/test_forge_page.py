"""Forge's page in headless Chromium (Debian's, driven by Playwright): the accordion in both tabs,
Gradio 4's image editor as the painting canvas, and the img2img mode switch."""

from __future__ import annotations

from pathlib import Path

import pytest
from smoke_webui import CHROMIUM_FLAGS

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def page(forge):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1800}).new_page()
        page.goto(forge.url, timeout=180_000)
        page.wait_for_selector("#txt2img_generate", timeout=180_000)
        yield page
        browser.close()


def test_accordion_and_canvas_render_in_both_tabs(page):
    for tab in ("txt2img", "img2img"):
        assert page.locator(f"#script_{tab}_guided_synthesis_accordion").count() == 1
    accordion = page.locator("#script_txt2img_guided_synthesis_accordion")
    accordion.click()
    strokes = page.locator("#script_txt2img_guided_synthesis_strokes")
    strokes.wait_for(state="visible", timeout=60_000)
    assert strokes.locator("canvas").count() >= 1  # Gradio 4's ImageEditor draws on a canvas
    page.locator("#script_txt2img_guided_synthesis_lr").wait_for(state="visible")
    DOCS.mkdir(exist_ok=True)
    accordion.screenshot(path=str(DOCS / "forge-txt2img.png"))


def test_img2img_mode_switch_shows_the_edit_section(page):
    page.locator("#tabs button", has_text="img2img").first.click()
    page.locator("#script_img2img_guided_synthesis_accordion").click()
    assert not page.locator("#script_img2img_guided_synthesis_edit_cfg").is_visible()  # mode "off"
    page.locator("#script_img2img_guided_synthesis_mode label", has_text="edit").click()
    page.wait_for_selector("#script_img2img_guided_synthesis_edit_cfg", state="visible", timeout=60_000)
    assert page.locator("#script_img2img_guided_synthesis_inversion_cfg").is_visible()
    assert not page.locator("#script_img2img_guided_synthesis_lr").is_visible()
