"""The MedicalNet ResNets: layout, shapes for every depth and head, parameter counts."""

import pytest
import torch

from septet.errors import ConfigError, NotFoundError
from septet.med3d import create_model, list_models
from septet.med3d.resnet import DEPTHS, ZeroPadShortcut

# MedicalNet's README: encoder parameters for one input channel (conv1 … layer4 with their
# batch norms; no segmentation head), in thousands.
MEDICALNET_PARAMS_K = {
    10: 14_356,
    18: 32_986,
    34: 63_296,
    50: 46_155,
    101: 85_201,
    152: 117_360,
    200: 126_560,
}


@pytest.mark.parametrize("depth", sorted(DEPTHS))
def test_encoder_parameter_count_equals_medicalnet(depth):
    with torch.device("meta"):  # no memory, no initialisation cost: only the shapes count
        model = create_model(f"resnet{depth}", task="segmentation", num_classes=2)
    count = sum(p.numel() for p in model.encoder_parameters())
    assert count / 1000 == pytest.approx(MEDICALNET_PARAMS_K[depth], rel=1e-3)


def test_shortcut_types_follow_medicalnet():
    with torch.device("meta"):
        r18, r34, r10, r50 = (create_model(f"resnet{d}") for d in (18, 34, 10, 50))
    assert isinstance(r18.layer2[0].downsample, ZeroPadShortcut)
    assert isinstance(r34.layer3[0].downsample, ZeroPadShortcut)
    assert isinstance(r10.layer2[0].downsample, torch.nn.Sequential)
    assert isinstance(r50.layer1[0].downsample, torch.nn.Sequential)


def test_strides_and_dilations_follow_medicalnet():
    with torch.device("meta"):
        model = create_model("resnet50")
    assert model.conv1.stride == (2, 2, 2)
    assert model.layer2[0].conv2.stride == (2, 2, 2)
    assert model.layer3[0].conv2.dilation == (2, 2, 2) and model.layer3[0].conv2.stride == (1, 1, 1)
    assert model.layer4[0].conv2.dilation == (4, 4, 4) and model.layer4[0].conv2.stride == (1, 1, 1)


@pytest.mark.parametrize("depth", sorted(DEPTHS))
def test_output_shapes_for_every_head(depth):
    torch.manual_seed(0)
    model = create_model(f"resnet{depth}", task="segmentation", num_classes=3, in_channels=2).eval()
    x = torch.randn(1, 2, 16, 16, 24)
    expansion = 4 if depth >= 50 else 1
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.shape == (1, 512 * expansion, 2, 2, 3)
        assert model(x).shape == (1, 3, 16, 16, 24)  # logits at the input's size
        assert model.conv_seg(features).shape == (1, 3, 4, 4, 6)  # MedicalNet's 1/4 grid
        model.reset_head("classification", 5)
        assert model(x).shape == (1, 5)
        model.reset_head("features")
        assert model(x).shape == features.shape


def test_segmentation_head_is_medicalnets_conv_seg():
    with torch.device("meta"):
        model = create_model("resnet10", num_classes=4)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith("conv_seg")}
    assert shapes["conv_seg.0.weight"] == (512, 32, 2, 2, 2)  # ConvTranspose3d, stride 2
    assert shapes["conv_seg.3.weight"] == (32, 32, 3, 3, 3)
    assert shapes["conv_seg.6.weight"] == (4, 32, 1, 1, 1)
    assert "conv_seg.6.bias" not in shapes


def test_gradient_flows_through_type_a_shortcut():
    shortcut = ZeroPadShortcut(8, stride=2)
    x = torch.randn(1, 4, 4, 4, 4, requires_grad=True)
    out = shortcut(x)
    assert out.shape == (1, 8, 2, 2, 2)
    assert torch.equal(out[:, 4:], torch.zeros_like(out[:, 4:]))
    out.sum().backward()
    assert x.grad.abs().sum() > 0  # MedicalNet's `.data` would make this zero


def test_registry_names_and_errors():
    assert list_models() == [f"resnet{d}" for d in sorted(DEPTHS)]
    with pytest.raises(NotFoundError, match="resnet10"):
        create_model("resnet42")
    with pytest.raises(ConfigError, match="task"):
        create_model("resnet10", task="detection")
    with pytest.raises(ValueError, match="5-D"):
        create_model("resnet10")(torch.zeros(1, 8, 8, 8))
