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


def test_upload_a_painting_read_its_colours_and_generate(page, tmp_path):
    from payloads import painting

    page.locator("#tabs button", has_text="txt2img").first.click()
    if not page.locator("#script_txt2img_guided_synthesis_lr").is_visible():
        page.locator("#script_txt2img_guided_synthesis_accordion").click()
    path = tmp_path / "strokes.png"
    painting(64, 64).save(path)
    page.locator("#script_txt2img_guided_synthesis_strokes input[type=file]").set_input_files(str(path))
    page.locator("#script_txt2img_guided_synthesis_enabled input").check()
    page.click("#script_txt2img_guided_synthesis_read_colours")
    page.wait_for_function(
        "() => document.querySelector('#script_txt2img_guided_synthesis_palette')"
        ".innerText.includes('#d03030')",
        timeout=60_000,
    )
    assert "#3050c0" in page.locator("#script_txt2img_guided_synthesis_palette").inner_text()
    page.fill("#txt2img_prompt textarea", "a red barn")
    for name, value in (("width", "64"), ("height", "64"), ("steps", "4")):
        page.fill(f"#txt2img_{name} input[type=number]", value)
        page.press(f"#txt2img_{name} input[type=number]", "Enter")
    page.fill("#script_txt2img_guided_synthesis_adam_steps input[type=number]", "2")
    page.press("#script_txt2img_guided_synthesis_adam_steps input[type=number]", "Enter")
    page.click("#txt2img_generate")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#html_info_txt2img')]"
        ".some(e => e.innerText.includes('Guided stroke loss'))",
        timeout=300_000,
    )
    info = page.locator("#html_info_txt2img").last.inner_text()
    assert "Guided mode: strokes" in info and "Guided N: 2" in info
    page.screenshot(path=str(DOCS / "forge-txt2img-result.png"), full_page=False)
