"""GradOP / GradOP+: gradient steps on the latent toward the strokes, and the decoders the gradient goes
through.
"""
