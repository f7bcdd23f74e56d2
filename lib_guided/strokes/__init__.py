"""The user's stroke painting: decoding it, its colours and palette, resizing, and the painting function f
of the loss.
"""
