"""Weights: MedicalNet's published layout, MONAI's names, septet's own folders."""

import json
from collections import OrderedDict

import pytest
import torch

from septet.errors import CheckpointError
from septet.med3d import create_model, load_model, save_model
from septet.med3d.resnet import is_encoder_key


def medicalnet_checkpoint(model, path):
    """What MedicalNet publishes: {'state_dict': {'module.<key>': tensor}}, encoder only,
    saved from nn.DataParallel."""
    state = OrderedDict(
        (f"module.{k}", v.clone()) for k, v in model.state_dict().items() if is_encoder_key(k)
    )
    torch.save({"state_dict": state}, path)
    return state


def test_medicalnet_checkpoint_loads_every_encoder_key(tmp_path):
    torch.manual_seed(1)
    published = create_model("resnet10", task="features")
    state = medicalnet_checkpoint(published, tmp_path / "resnet_10.pth")

    torch.manual_seed(2)
    model = create_model("resnet10", num_classes=3, pretrained=tmp_path / "resnet_10.pth")
    report = model.load_report
    assert report.missing_encoder == []
    assert report.unexpected == [] and report.mismatched == []
    assert all(k.startswith("conv_seg.") for k in report.missing_head)
    assert len(report.loaded) == len(state)
    for key, value in state.items():
        assert torch.equal(model.state_dict()[key.removeprefix("module.")], value)


def test_medicalnet_checkpoint_without_batch_counters_loads(tmp_path):
    # Checkpoints from PyTorch 0.4 have no num_batches_tracked; that is not a missing weight.
    published = create_model("resnet18", task="features")
    state = {
        f"module.{k}": v
        for k, v in published.state_dict().items()
        if is_encoder_key(k) and not k.endswith("num_batches_tracked")
    }
    torch.save({"state_dict": state}, tmp_path / "old.pth")
    model = create_model("resnet18", pretrained=tmp_path / "old.pth")
    assert model.load_report.missing_encoder == []


def test_wrong_depth_is_refused_with_what_the_file_is(tmp_path):
    medicalnet_checkpoint(create_model("resnet50", task="features"), tmp_path / "resnet_50.pth")
    with pytest.raises(CheckpointError, match=r"ResNet-50 \(bottleneck.*3-4-6-3") as error:
        create_model("resnet18", pretrained=tmp_path / "resnet_50.pth")
    assert "matching depth" in str(error.value)


def test_checkpoint_matching_nothing_is_refused(tmp_path):
    torch.save({"state_dict": {"encoder.block.weight": torch.zeros(3)}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="matches nothing"):
        create_model("resnet10", pretrained=tmp_path / "other.pth", strict_encoder=False)
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(CheckpointError, match="holds no tensors"):
        create_model("resnet10", pretrained=tmp_path / "list.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        create_model("resnet10", pretrained=tmp_path / "junk.pth")


def test_monai_classifier_names_load_into_the_classification_head(tmp_path):
    # MONAI's ResNet: the same encoder names, a Linear head called `fc`, no prefix.
    source = create_model("resnet10", task="classification", num_classes=4)
    torch.save(source.state_dict(), tmp_path / "monai.pt")
    model = create_model(
        "resnet10", task="classification", num_classes=4, pretrained=tmp_path / "monai.pt"
    )
    assert model.load_report.missing_encoder == [] and model.load_report.missing_head == []
    assert torch.equal(model.fc.weight, source.fc.weight)


def test_pretrained_single_channel_spreads_over_more_input_channels(tmp_path):
    source = create_model("resnet10", task="features")
    medicalnet_checkpoint(source, tmp_path / "r10.pth")
    model = create_model("resnet10", in_channels=3, pretrained=tmp_path / "r10.pth")
    assert model.load_report.adapted == ["conv1.weight from 1 to 3 input channels"]
    x = torch.randn(1, 1, 8, 8, 8)
    # Three copies of one modality give the single-channel model's first response.
    assert torch.allclose(model.conv1(x.repeat(1, 3, 1, 1, 1)), source.conv1(x), atol=1e-5)


def test_partial_load_when_asked(tmp_path):
    medicalnet_checkpoint(create_model("resnet34", task="features"), tmp_path / "r34.pth")
    model = create_model("resnet18", pretrained=tmp_path / "r34.pth", strict_encoder=False)
    report = model.load_report
    assert report.loaded and report.missing_encoder == []
    assert any(k.startswith("layer3.2.") for k in report.unexpected)  # 34 has more blocks


def test_save_and_load_our_own_folder(tmp_path):
    model = create_model("resnet18", num_classes=3, in_channels=2)
    folder = save_model(model, tmp_path / "model", note="hello")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    assert config["depth"] == 18 and config["num_classes"] == 3 and config["shortcut"] == "A"
    again = load_model(folder)
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value)
    assert again.extra_config == {"note": "hello"}
    # A septet folder is also a pretrained source for a model with another head.
    other = create_model("resnet18", num_classes=5, in_channels=2, pretrained=folder)
    assert other.load_report.missing_encoder == [] and other.load_report.mismatched


def test_a_failed_save_leaves_the_old_model_intact(tmp_path, monkeypatch):
    model = create_model("resnet10")
    folder = save_model(model, tmp_path / "model")
    before = (folder / "model.safetensors").read_bytes()

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("septet.med3d.weights.atomic_write_json", boom)
    with pytest.raises(OSError, match="disk full"):
        save_model(create_model("resnet10"), folder)
    assert (folder / "model.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folder left behind
