import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _deterministic_threads():
    # CI has 2 cores; one intra-op thread keeps timings stable and results reproducible
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A small SD-like diffusers model (epsilon prediction) with seeded random weights."""
    from tests.tiny_models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny"), seed=0)


@pytest.fixture(scope="session")
def tiny_v_model(tmp_path_factory):
    """The same architecture with v-prediction (SD 2.x 768 style)."""
    from tests.tiny_models import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_v"), seed=1, prediction_type="v_prediction")
