"""The X/Y/Z plot axes without a WebUI.

The plot module only exists inside a running WebUI, so ``StandInPlot`` copies the two things we use
of it (``AxisOption`` with its img2img subclass, and the ``axis_options`` list); the real plot is
exercised in tests/e2e/test_webui_api.py.
"""

from copy import copy
from types import SimpleNamespace

import pytest

from lib_guided.adapters.webui import xyz_axes
from lib_guided.adapters.webui.args import parse_script_args
from lib_guided.errors import GuidedInputError


class AxisOption:
    def __init__(
        self, label, type, apply, format_value=None, confirm=None, cost=0.0, choices=None, prepare=None
    ):
        self.label, self.type, self.apply, self.confirm, self.choices = label, type, apply, confirm, choices


class AxisOptionImg2Img(AxisOption):
    is_img2img = True


def stand_in_plot():
    return SimpleNamespace(AxisOption=AxisOption, AxisOptionImg2Img=AxisOptionImg2Img, axis_options=[])


def axis(plot, label):
    return next(a for a in plot.axis_options if a.label == label)


def test_registering_twice_adds_each_axis_once():
    plot = stand_in_plot()
    assert xyz_axes.register_axes(plot) == len(xyz_axes.AXES)
    assert xyz_axes.register_axes(plot) == 0
    labels = [a.label for a in plot.axis_options]
    assert len(labels) == len(set(labels)) == len(xyz_axes.AXES)


def test_edit_settings_are_img2img_axes_and_choices_are_listed():
    plot = stand_in_plot()
    xyz_axes.register_axes(plot)
    assert isinstance(axis(plot, "[Guided] Edit CFG"), AxisOptionImg2Img)
    assert not isinstance(axis(plot, "[Guided] Learning rate"), AxisOptionImg2Img)
    assert axis(plot, "[Guided] Inversion solver").choices() == ["ddim", "fixed-point", "aidi-e", "aidi-a"]
    assert axis(plot, "[Guided] Adam steps N").type is int


def test_each_cell_gets_its_own_overrides_and_they_reach_the_params():
    plot = stand_in_plot()
    xyz_axes.register_axes(plot)
    p = SimpleNamespace()
    cells = []
    for lr in (0.05, 0.2):  # the plot shallow-copies p per cell, then applies each axis
        cell = copy(p)
        axis(plot, "[Guided] Learning rate").apply(cell, lr, [0.05, 0.2])
        axis(plot, "[Guided] Adam steps N").apply(cell, 4, [4])
        cells.append(cell)
    assert not hasattr(p, xyz_axes.OVERRIDES_ATTR)
    params = [parse_script_args(({"enabled": True},), c._guided_overrides) for c in cells]
    assert [(x.lr, x.adam_steps) for x in params] == [(0.05, 4), (0.2, 4)]


def test_out_of_range_values_are_refused_before_the_grid_runs():
    plot = stand_in_plot()
    xyz_axes.register_axes(plot)
    axis(plot, "[Guided] Learning rate").confirm(None, [0.1, 0.5])
    with pytest.raises(GuidedInputError, match=r"^lr: X/Y/Z plot value: must be in \[0.001, 1\], got 7"):
        axis(plot, "[Guided] Learning rate").confirm(None, [0.1, 7.0])
    with pytest.raises(GuidedInputError, match="^solver: X/Y/Z plot value: must be one of"):
        axis(plot, "[Guided] Inversion solver").confirm(None, ["aidi-x"])


def test_the_plot_module_is_found_by_its_script_file_name():
    plot = stand_in_plot()
    other = SimpleNamespace(script_class=type("Other", (), {"__module__": "prompt_matrix.py"}), module=None)
    mine = SimpleNamespace(script_class=type("Script", (), {"__module__": "xyz_grid.py"}), module=plot)
    assert xyz_axes.find_xyz_module([other, mine]) is plot
    assert xyz_axes.find_xyz_module([other]) is None


def test_decoders_the_webui_cannot_run_are_neither_offered_nor_accepted():
    plot = stand_in_plot()
    xyz_axes.register_axes(plot)
    decoder = next(a for a in plot.axis_options if a.label.endswith("Decoder for the gradient"))
    assert decoder.choices() == ["full", "linear", "linear-anchored", "linear-anchored-half", "linear-local"]
    for bad in ("tiny", "full-checkpointed"):
        with pytest.raises(GuidedInputError, match=rf"^decoder: X/Y/Z plot value: '{bad}' is not available"):
            decoder.confirm(SimpleNamespace(), ["linear", bad])
    decoder.confirm(SimpleNamespace(), ["full", "linear-anchored"])
    blur = next(a for a in plot.axis_options if "Blur" in a.label)
    with pytest.raises(GuidedInputError, match="^blur_size: X/Y/Z plot value: must be an odd number"):
        blur.confirm(SimpleNamespace(), [21, 20])
