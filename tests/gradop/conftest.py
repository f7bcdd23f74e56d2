"""Fixtures of the gradient-decoder tests: the linear map fitted to the tiny model."""

import pytest

from lib_guided.gradop.decoders.factory import LinearLatentDecoder, fit_linear_decoder, typical_fit_latents


@pytest.fixture(scope="module")
def fitted(tiny_model) -> LinearLatentDecoder:
    return fit_linear_decoder(tiny_model.decode, typical_fit_latents(tiny_model, 8, (8, 8), seed=0), 8)
