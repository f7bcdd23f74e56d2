"""AIDI: fixed-point DDIM inversion (Anderson acceleration), editing from the inverted noise, and edit
masks.
"""
