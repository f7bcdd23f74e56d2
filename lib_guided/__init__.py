"""Guided synthesis core: GradOP stroke guidance, region control and AIDI inversion in pure torch.

Nothing in this package imports the WebUI (``modules``, ``ldm``, ``sgm``, ``gradio``); the WebUI
adapter lives in ``lib_guided.adapters.webui`` and is the only exception.
"""

__version__ = "0.1.0"
