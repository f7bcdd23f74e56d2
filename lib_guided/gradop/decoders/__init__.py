"""Differentiable latent -> image decoders for the stroke gradient: full VAE, checkpointed, linear,
anchored, tiny.
"""
