"""Whole-volume inference: sliding windows default to the training patch size (a larger
window changes what MedicalNet's dilated layers see) and say so when they differ."""

import logging

import numpy as np
import pytest

from septet.errors import ConfigError
from septet.med3d import create_model
from septet.med3d.config import TrainConfig
from septet.med3d.inference import predict_probabilities, training_patch_size
from septet.med3d.training import SegmentationTask, Trainer


@pytest.fixture
def trained(phantom_sample):
    config = TrainConfig(
        model="resnet10", patch_size=(16, 16, 16), batch_size=1, epochs=1, steps_per_epoch=1
    )
    model = create_model("resnet10", num_classes=2)
    task = SegmentationTask("phantoms", [phantom_sample((16, 16, 16))], 2)
    Trainer(model, [task], config).fit()
    return model, phantom_sample((24, 20, 16), seed=3)


def test_the_trainer_records_the_patch_size_and_inference_uses_it(trained):
    model, sample = trained
    assert training_patch_size(model) == (16, 16, 16)
    default = predict_probabilities(model, sample["image"])
    explicit = predict_probabilities(model, sample["image"], roi_size=(16, 16, 16))
    assert default.shape == (2, 24, 20, 16)
    np.testing.assert_allclose(default, explicit)


def test_a_window_other_than_the_training_patch_is_warned_about(trained, caplog):
    model, sample = trained
    with caplog.at_level(logging.WARNING, logger="septet.med3d.inference"):
        predict_probabilities(model, sample["image"], roi_size=(24, 24, 24))
    assert "differ from the (16, 16, 16) patches" in caplog.text


def test_an_untrained_model_needs_an_explicit_window(phantom_sample):
    model = create_model("resnet10", num_classes=2)
    with pytest.raises(ConfigError, match="roi_size is needed"):
        predict_probabilities(model, phantom_sample((16, 16, 16))["image"])
