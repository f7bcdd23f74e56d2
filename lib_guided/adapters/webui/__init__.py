"""The WebUI adapter: the only part of lib_guided that imports the WebUI (``modules``, ``gradio``).

Everything here is thin: it turns the WebUI's objects into the core's protocol and installs the
core's hooks for exactly one sampler call at a time.
"""
