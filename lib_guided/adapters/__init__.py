"""Hosts the core runs in: the diffusers model and the WebUI adapter (the only code that imports
``modules``).
"""
