"""med3d test setup: one torch thread (the machine's two cores are shared; more threads only
contend), restored afterwards; small helpers for building samples."""

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def phantom_sample():
    """Builds a preprocessed-style sample dict of a phantom with identity geometry."""
    from septet.med3d.phantoms import make_phantom

    def build(shape=(24, 24, 24), seed=0, **kwargs):
        image, label = make_phantom(shape, seed=seed, **kwargs)
        return {"image": image[None], "label": label, "affine": np.eye(4), "meta": {}}

    return build
