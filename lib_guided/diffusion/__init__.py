"""Diffusion maths shared by every feature: sigma schedules, CFG, and the k-diffusion-style sampler with
hook points.
"""
