"""WebUI and Forge entry point of the Guided Synthesis extension (GradOP strokes, AIDI editing).

Thin on purpose: everything lives in lib_guided (core), lib_guided.adapters.webui (the script layer,
the same on both hosts) and lib_guided.adapters.forge (what Forge changes underneath).
"""

import modules.scripts as scripts
from modules import script_callbacks

from lib_guided.adapters.hosts import current_host
from lib_guided.adapters.webui import script_logic, ui, xyz_axes
from lib_guided.adapters.webui.args import parse_script_args

HOST = current_host()  # AUTOMATIC1111's WebUI or Forge: one script layer, the host's differences behind it


def add_xyz_axes():
    xyz = xyz_axes.find_xyz_module(scripts.scripts_data)
    if xyz is not None:  # the plot script may be disabled
        xyz_axes.register_axes(xyz)


script_callbacks.on_before_ui(add_xyz_axes, name="guided_synthesis_xyz_axes")


class GuidedSynthesisScript(scripts.Script):
    def title(self):
        return "Guided Synthesis"

    def show(self, is_img2img):
        return scripts.AlwaysVisible

    def ui(self, is_img2img):
        components, self.infotext_fields = ui.build(is_img2img, self.elem_id, HOST)
        self.paste_field_names = [key for _, key in self.infotext_fields if isinstance(key, str)]
        return components

    def process(self, p, *args):
        p._guided_run = None  # reset first: a failed run must not leak into the next one
        try:
            params = parse_script_args(args, getattr(p, xyz_axes.OVERRIDES_ATTR, None))
            p._guided_run = script_logic.prepare(p, params, self.is_img2img, HOST)
        except Exception as error:  # noqa: BLE001 - every failure must stop this job, not only bad input
            # the WebUI logs script errors and generates anyway; a failed preparation must stop the job
            script_logic.fail_job(p, error)

    def process_before_every_sampling(self, p, *args, **kwargs):
        script_logic.install_for_this_sampling(p, getattr(p, "_guided_run", None), self.is_img2img)

    def postprocess(self, p, processed, *args):
        script_logic.append_reconstructions(processed, getattr(p, "_guided_run", None))
        p._guided_run = None
