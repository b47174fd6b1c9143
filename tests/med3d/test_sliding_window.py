"""Sliding-window inference covers the volume and blends windows correctly."""

import pytest
import torch

from septet.errors import ConfigError
from septet.med3d.sliding_window import importance_map, sliding_window_inference, window_starts


def test_windows_cover_the_axis_and_end_at_the_border():
    assert window_starts(10, 4, 0.5) == [0, 2, 4, 6]
    assert window_starts(11, 4, 0.5) == [0, 2, 4, 6, 7]
    assert window_starts(4, 4, 0.5) == [0]
    assert window_starts(10, 4, 0.0) == [0, 4, 6]


@pytest.mark.parametrize("blend", ["gaussian", "mean"])
def test_a_pointwise_network_gives_the_whole_volume_answer(blend):
    # A voxel-wise network has no context, so every window agrees: any blend must give
    # exactly the full-volume output.
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.Conv3d(2, 3, 1), torch.nn.Softmax(dim=1))
    volume = torch.randn(1, 2, 13, 9, 11)
    expected = network(volume)
    blended = sliding_window_inference(volume, (6, 6, 6), network, overlap=0.5, blend=blend)
    assert blended.shape == (1, 3, 13, 9, 11)
    assert torch.allclose(blended, expected, atol=1e-6)


def test_mean_blend_averages_what_windows_say():
    # A "network" that answers its window's mean: voxels covered by two windows get the average.
    volume = torch.arange(8, dtype=torch.float32).reshape(1, 1, 8, 1, 1).expand(1, 1, 8, 4, 4)
    volume = volume.contiguous()

    def window_mean(batch):
        return batch.mean(dim=(2, 3, 4), keepdim=True).expand_as(batch)

    out = sliding_window_inference(volume, (4, 4, 4), window_mean, overlap=0.5, blend="mean")
    # windows start at 0, 2, 4 along the first axis: means 1.5, 3.5, 5.5
    assert out[0, 0, :, 0, 0].tolist() == pytest.approx([1.5, 1.5, 2.5, 2.5, 4.5, 4.5, 5.5, 5.5])


def test_gaussian_weights_trust_the_centre():
    weight = importance_map((8, 8, 8), "gaussian")
    assert weight[3, 3, 3] > weight[0, 3, 3] > 0
    with pytest.raises(ConfigError, match="blend"):
        importance_map((8, 8, 8), "median")


def test_volume_smaller_than_the_window_is_padded_and_cropped_back():
    network = torch.nn.Conv3d(1, 2, 1)
    volume = torch.randn(1, 1, 5, 7, 3)
    with torch.no_grad():
        out = sliding_window_inference(volume, (8, 8, 8), network)
        assert torch.allclose(out, network(volume), atol=1e-6)
