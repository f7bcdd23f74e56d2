"""Cross-attention control: bind prompt phrases to stroke colours (token masks, one attention forward for
ldm / sgm / diffusers).
"""
