"""The page in headless Chromium (Debian's, driven by Playwright; no browser download)."""

from __future__ import annotations

from pathlib import Path

import pytest
from smoke_webui import CHROMIUM_FLAGS

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture(scope="module")
def page(sd1, tmp_path_factory):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1800})
        page = context.new_page()
        page.goto(sd1.url, timeout=180_000)
        page.wait_for_selector("#txt2img_generate", timeout=180_000)
        yield page
        browser.close()


def small_txt2img(page, steps: int) -> None:
    """Prompt "a red barn", 64x64, ``steps`` steps: a generation that takes about a second."""
    page.fill("#txt2img_prompt textarea", "a red barn")
    for name, value in (("width", "64"), ("height", "64"), ("steps", str(steps))):
        page.fill(f"#txt2img_{name} input[type=number]", value)
        page.press(f"#txt2img_{name} input[type=number]", "Enter")


def open_tab(page, name: str) -> None:
    page.locator("#tabs > .tab-nav button", has_text=name).first.click()


def test_accordion_renders_in_both_tabs(page):
    assert page.locator("#script_txt2img_guided_synthesis_accordion").count() == 1
    assert page.locator("#script_img2img_guided_synthesis_accordion").count() == 1
    open_tab(page, "img2img")
    page.locator("#script_img2img_guided_synthesis_accordion").click()
    assert not page.locator("#script_img2img_guided_synthesis_edit_cfg").is_visible()  # mode "off"
    page.locator("#script_img2img_guided_synthesis_mode label", has_text="edit").click()
    page.wait_for_selector("#script_img2img_guided_synthesis_edit_cfg", state="visible")
    assert not page.locator("#script_img2img_guided_synthesis_lr").is_visible()  # strokes section hidden
    assert page.locator("#script_img2img_guided_synthesis_inversion_cfg").is_visible()
    DOCS.mkdir(exist_ok=True)
    page.locator("#script_img2img_guided_synthesis_accordion").screenshot(
        path=str(DOCS / "webui-img2img.png")
    )
    open_tab(page, "txt2img")


def test_generate_without_a_painting_shows_a_clear_error(page):
    page.locator("#script_txt2img_guided_synthesis_accordion").click()
    page.locator("#script_txt2img_guided_synthesis_enabled input").check()
    small_txt2img(page, steps=2)
    page.click("#txt2img_generate")
    expected = "Guided Synthesis: strokes: stroke guidance is enabled but no painting was given"
    page.wait_for_function(
        f"() => (document.querySelector('#html_log_txt2img') || {{}}).innerText?.includes({expected!r})",
        timeout=240_000,
    )
    page.locator("#script_txt2img_guided_synthesis_enabled input").uncheck()


def test_paint_on_the_canvas_and_generate(page):
    if not page.locator("#script_txt2img_guided_synthesis_lr").is_visible():
        page.locator("#script_txt2img_guided_synthesis_accordion").click()
    page.click("#script_txt2img_guided_synthesis_blank")
    canvas = page.locator("#script_txt2img_guided_synthesis_strokes canvas").last
    canvas.wait_for(state="visible", timeout=60_000)
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.2, box["y"] + box["height"] * 0.5)
    page.mouse.down()
    for i in range(1, 21):
        page.mouse.move(box["x"] + box["width"] * (0.2 + 0.03 * i), box["y"] + box["height"] * 0.5, steps=2)
    page.mouse.up()
    page.locator("#script_txt2img_guided_synthesis_enabled input").check()
    page.click("#script_txt2img_guided_synthesis_read_colours")
    page.wait_for_function(
        "() => document.querySelector('#script_txt2img_guided_synthesis_palette').innerText.includes('#')",
        timeout=60_000,
    )
    page.wait_for_selector("#script_txt2img_guided_synthesis_palette .guided-swatch", timeout=60_000)
    # the swatch script must leave the table alone once decorated (a write per UI update loops forever)
    mutations = page.evaluate(
        """() => new Promise(resolve => {
            const seen = [];
            const observer = new MutationObserver(records => records.forEach(r => seen.push(
                r.type + ' ' + (r.attributeName || '') + ' ' + (r.target.className || r.target.nodeName))));
            const table = gradioApp().querySelector('#script_txt2img_guided_synthesis_palette');
            observer.observe(table, {subtree: true, childList: true, attributes: true});
            setTimeout(() => { observer.disconnect(); resolve(seen); }, 1500);
        })"""
    )
    assert len(mutations) < 10, mutations[:20]
    small_txt2img(page, steps=4)
    page.locator("#script_txt2img_guided_synthesis_accordion").screenshot(
        path=str(DOCS / "webui-txt2img.png")
    )
    page.click("#txt2img_generate")
    page.wait_for_function(
        "() => (document.querySelector('#html_info_txt2img') || {}).innerText"
        "?.includes('Guided enabled: True')",
        timeout=240_000,
    )
    info = page.locator("#html_info_txt2img").last.inner_text()  # gradio nests two with this id
    assert "Guided mode: strokes" in info and "Guided stroke loss:" in info
    assert page.locator("#txt2img_gallery img").count() >= 1
    page.screenshot(path=str(DOCS / "webui-txt2img-result.png"), full_page=False)


def test_pasting_infotext_restores_the_palette_and_sliders(page):
    open_tab(page, "txt2img")
    accordion = page.locator("#script_txt2img_guided_synthesis_accordion")
    if not page.locator("#script_txt2img_guided_synthesis_lr").is_visible():
        accordion.click()
    infotext = (
        "a red barn\nSteps: 4, Sampler: Euler, CFG scale: 5, Seed: 1, Size: 64x64, "
        'Guided enabled: True, Guided mode: strokes, Guided palette: "#d03030=red barn:1.5; #3050c0=sky:1", '
        "Guided lr: 0.07, Guided N: 7, Guided region weight: 2.5, "
        'Guided strokes: "not stored (paste the painting again)"'
    )
    page.fill("#txt2img_prompt textarea", infotext)
    page.click("#txt2img_tools #paste")
    page.wait_for_function(
        "() => document.querySelector('#script_txt2img_guided_synthesis_palette')"
        ".innerText.includes('red barn')",
        timeout=60_000,
    )
    table = page.locator("#script_txt2img_guided_synthesis_palette").inner_text()
    assert "#d03030" in table and "sky" in table and "1.5" in table
    for name, value in (("lr", "0.07"), ("adam_steps", "7"), ("region_weight", "2.5")):
        assert page.input_value(f"#script_txt2img_guided_synthesis_{name} input[type=number]") == value
    assert page.is_checked("#script_txt2img_guided_synthesis_enabled input")
    assert page.input_value("#txt2img_prompt textarea") == "a red barn"
