"""The accordion, built from the parameter declaration so UI, API order and infotext never drift."""

from __future__ import annotations

import functools

import gradio as gr
from PIL import Image

from lib_guided.adapters.webui.args import canvas_image
from lib_guided.adapters.webui.host import WEBUI, WebUIHost
from lib_guided.adapters.webui.host_choices import choices_for
from lib_guided.palette_text import parse_palette
from lib_guided.params import BEFORE_FIELD_EXISTED, FIELDS, Field, newer_field_from_infotext
from lib_guided.strokes.io import load_strokes
from lib_guided.strokes.palette import extract_palette


def _component(field: Field, is_img2img: bool, elem_id, host: WebUIHost):
    kwargs = dict(label=field.label, elem_id=elem_id(field.name))
    if field.name == "mode":
        choices = list(field.choices) if is_img2img else ["strokes"]
        return gr.Radio(
            choices,
            value="off" if is_img2img else "strokes",
            visible=is_img2img,
            label=field.label,
            elem_id=elem_id(field.name),
        )
    if field.name == "strokes":
        return host.strokes_component(**kwargs)
    if field.name == "palette":
        return gr.Dataframe(
            headers=["color", "phrase", "weight"],
            datatype=["str", "str", "number"],
            type="array",
            row_count=(1, "dynamic"),
            col_count=(3, "fixed"),
            **kwargs,
        )
    if field.kind is bool:
        return gr.Checkbox(value=field.default, **kwargs)
    if field.choices:
        return gr.Dropdown(list(choices_for(field)), value=field.default, **kwargs)
    if field.kind is str:
        return gr.Textbox(value=field.default, lines=1, **kwargs)
    if field.step is None:
        return gr.Number(value=field.default, **kwargs)
    return gr.Slider(minimum=field.low, maximum=field.high, step=field.step, value=field.default, **kwargs)


def read_palette(painting, tolerance) -> list[list]:
    """Rows for the palette table: every colour of the painting, phrases left for the user."""
    if painting is None:
        return [["", "", 1.0]]
    colours = extract_palette(load_strokes(canvas_image(painting)), tolerance=float(tolerance))
    return [[c.hex, "", 1.0] for c in colours] or [["", "", 1.0]]


def blank_canvas(width, height) -> Image.Image:
    return Image.new("RGBA", (int(width or 512), int(height or 512)), (255, 255, 255, 255))


SECTIONS = (("strokes", "Stroke guidance (GradOP+)"), ("edit", "Real-image editing (AIDI)"))


def _section(fields: list[Field], is_img2img: bool, elem_id, components: dict, host: WebUIHost) -> None:
    """Sliders two to a row; everything else full width."""
    pending: list[Field] = []

    def flush() -> None:
        if pending:
            with gr.Row():
                for f in pending:
                    components[f.name] = _component(f, is_img2img, elem_id, host)
            pending.clear()

    for field in fields:
        if field.step is not None and not field.choices:
            pending.append(field)
            if len(pending) == 2:
                flush()
            continue
        flush()
        components[field.name] = _component(field, is_img2img, elem_id, host)
        if field.name == "strokes":
            with gr.Row():
                components["_blank"] = gr.Button("New blank canvas", elem_id=elem_id("blank"))
                components["_read"] = gr.Button("Read colours", elem_id=elem_id("read_colours"))
    flush()


def build(is_img2img: bool, elem_id, host: WebUIHost = WEBUI) -> tuple[list, list]:
    """Components in FIELDS order, and the infotext bindings for them."""
    components: dict = {}
    boxes = {}
    with gr.Accordion("Guided Synthesis", open=False, elem_id=elem_id("accordion")):
        gr.HTML(
            "<p class='guided-hint'>Paint a rough colour layout, press <b>Read colours</b>, then bind "
            "phrases to colours, written like a short prompt (<i>a red barn</i>); a colour without a "
            "phrase only guides colour.</p>"
        )
        with gr.Row():
            _section([f for f in FIELDS if f.group == "common"], is_img2img, elem_id, components, host)
        for group, title in SECTIONS:
            # txt2img has strokes only; img2img shows the section of the chosen mode
            visible = group == "strokes" if not is_img2img else False
            with gr.Group(visible=visible, elem_id=elem_id(f"{group}_section")) as boxes[group]:
                gr.Markdown(f"**{title}**")
                _section([f for f in FIELDS if f.group == group], is_img2img, elem_id, components, host)
    components["_read"].click(
        read_palette, [components["strokes"], components["colour_tolerance"]], [components["palette"]]
    )
    components["_blank"].click(lambda: blank_canvas(512, 512), [], [components["strokes"]])
    if is_img2img:
        components["mode"].change(
            lambda mode: (gr.update(visible=mode == "strokes"), gr.update(visible=mode == "edit")),
            [components["mode"]],
            [boxes["strokes"], boxes["edit"]],
        )
    infotext = []
    for field in FIELDS:
        if field.infotext is None:
            continue
        if field.name == "palette":
            infotext.append((components[field.name], _palette_from_infotext))
        elif field.name in BEFORE_FIELD_EXISTED:
            infotext.append((components[field.name], functools.partial(_newer_field_from_infotext, field)))
        else:
            infotext.append((components[field.name], field.infotext))
    return [components[f.name] for f in FIELDS], infotext


def _newer_field_from_infotext(field: Field, values: dict):
    value = newer_field_from_infotext(field, values)
    return gr.update() if value is None else value


def _palette_from_infotext(values: dict):
    """The palette table from pasted infotext. An update, not the rows: the WebUI casts a plain value
    to the type of the component's current value, and a table's is a dict, so rows would be dropped."""
    text = values.get("Guided palette")
    if not text:
        return gr.update()
    return gr.update(value=[[e["color"], e["phrase"], e["weight"]] for e in parse_palette(text)])
