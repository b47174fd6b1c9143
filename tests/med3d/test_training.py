"""Training: learning works end to end, resume is exact, transfer-learning controls do what
they say, multi-dataset pretraining hands its encoder to fine-tuning."""

import numpy as np
import pytest
import torch

from septet.errors import ConfigError
from septet.med3d import create_model, pretrain
from septet.med3d.config import TrainConfig
from septet.med3d.inference import evaluate_samples
from septet.med3d.training import SegmentationTask, Trainer, segmentation_loss

TINY = dict(model="resnet10", patch_size=(16, 16, 16), batch_size=1, rotate_degrees=0)


@pytest.fixture
def tiny_task(phantom_sample):
    def build(n=2, name="phantoms"):
        return SegmentationTask(name, [phantom_sample((16, 16, 16), seed=s) for s in range(n)], 2)

    return build


def test_short_training_on_phantoms_reaches_dice_090(phantom_sample):
    # Big lesions, because MedicalNet's head predicts on a grid 4× coarser than the input.
    size, radius = (24, 24, 24), (8.0, 10.0)
    train = [phantom_sample(size, seed=s, radius=radius, noise=0.2) for s in range(6)]
    held_out = [phantom_sample(size, seed=s, radius=radius, noise=0.2) for s in (10, 11, 12)]
    config = TrainConfig(
        model="resnet10",
        patch_size=size,
        batch_size=2,
        epochs=1,
        steps_per_epoch=60,
        lr=1e-3,
        schedule="cosine",
        rotate_degrees=0,
        jitter=0.0,
        seed=0,
    )
    torch.manual_seed(0)
    model = create_model("resnet10", num_classes=2)
    Trainer(model, [SegmentationTask("phantoms", train, 2)], config).fit()
    scores = evaluate_samples(model, held_out, config)
    dice = [s["dice_mean"] for s in scores]
    assert min(dice) >= 0.9, dice
    assert all(s["hd95_mm"][0] <= 2.0 for s in scores)


def test_resume_continues_the_same_epoch_with_the_same_optimizer_state(tmp_path, tiny_task):
    config = TrainConfig(**TINY, epochs=2, steps_per_epoch=3, seed=5)

    def fresh():
        torch.manual_seed(0)
        return Trainer(create_model("resnet10", num_classes=2), [tiny_task()], config)

    uninterrupted = fresh()
    uninterrupted.fit()

    interrupted = fresh()
    interrupted.config.checkpoint_dir = str(tmp_path / "ckpt")
    interrupted.config.checkpoint_every = 1
    stopped = interrupted.fit(stop_after_steps=4)  # "crash" after epoch 1, step 1
    assert (stopped.epoch, stopped.step_in_epoch, stopped.global_step) == (1, 1, 4)
    saved_optimizer = interrupted.optimizer.state_dict()

    resumed = fresh()
    resumed.load_checkpoint(tmp_path / "ckpt")
    assert (resumed.epoch, resumed.step_in_epoch, resumed.global_step) == (1, 1, 4)
    restored = resumed.optimizer.state_dict()
    for index, state in saved_optimizer["state"].items():
        assert torch.equal(restored["state"][index]["exp_avg"], state["exp_avg"])
        assert torch.equal(restored["state"][index]["exp_avg_sq"], state["exp_avg_sq"])
    assert resumed.history == [interrupted.history[0]]

    result = resumed.fit()
    assert (result.epoch, result.global_step) == (2, 6)
    for key, value in uninterrupted.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


def test_frozen_encoder_learns_nothing_then_learns_after_unfreezing(tiny_task):
    config = TrainConfig(**TINY, epochs=2, steps_per_epoch=2, freeze_encoder_epochs=1)
    torch.manual_seed(0)
    model = create_model("resnet10", num_classes=2)
    trainer = Trainer(model, [tiny_task()], config, pretrained_encoder=True)
    encoder_before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("layer")}
    head_before = model.conv_seg[6].weight.clone()
    trainer.fit(stop_after_steps=2)  # the frozen epoch
    for key, value in encoder_before.items():
        assert torch.equal(model.state_dict()[key], value), key  # weights and BN statistics
    assert not torch.equal(model.conv_seg[6].weight, head_before)
    trainer.fit()
    assert not torch.equal(model.layer4[0].conv1.weight, encoder_before["layer4.0.conv1.weight"])


def test_new_layers_get_the_learning_rate_multiplier_only_when_pretrained(tiny_task):
    config = TrainConfig(**TINY, lr=1e-3, head_lr_multiplier=10)
    model = create_model("resnet10", num_classes=2)
    pretrained = Trainer(model, [tiny_task()], config, pretrained_encoder=True)
    lrs = {g["name"]: g["lr"] for g in pretrained.optimizer.param_groups}
    assert lrs == {"encoder": pytest.approx(1e-3), "head": pytest.approx(1e-2)}
    head_ids = {id(p) for p in model.head_parameters()}
    assert {id(p) for p in pretrained.optimizer.param_groups[1]["params"]} == head_ids
    scratch = Trainer(model, [tiny_task()], config, pretrained_encoder=False)
    assert [g["lr"] for g in scratch.optimizer.param_groups] == pytest.approx([1e-3, 1e-3])


def test_bf16_autocast_step_is_finite(tiny_task):
    config = TrainConfig(**TINY, epochs=1, steps_per_epoch=1, precision="bf16")
    trainer = Trainer(create_model("resnet10", num_classes=2), [tiny_task(1)], config)
    assert trainer.amp_dtype == torch.bfloat16
    result = trainer.fit()
    assert np.isfinite(result.history[0]["loss"])


def test_labels_outside_the_classes_are_refused(phantom_sample):
    sample = phantom_sample((16, 16, 16), num_lesions=2)
    with pytest.raises(ConfigError, match="class 2 but num_classes is 2"):
        SegmentationTask("bad", [sample], 2)


def test_coarse_logits_are_scored_against_the_full_resolution_label(phantom_sample):
    # A D/4-grid model (MedicalNet's training grid): its logits are resized to the label,
    # so a lesion smaller than one coarse cell still shows in the loss.
    coarse = torch.randn(2, 2, 4, 4, 4)
    target = torch.zeros(2, 16, 16, 16, dtype=torch.long)
    target[0, 5:7, 9:11, 2:4] = 1  # 8 voxels: an eighth of one 4³ cell
    resized = torch.nn.functional.interpolate(
        coarse, size=(16, 16, 16), mode="trilinear", align_corners=False
    )
    assert torch.allclose(segmentation_loss(coarse, target), segmentation_loss(resized, target))
    model = create_model("resnet10", num_classes=2)
    model.config.full_resolution = False
    config = TrainConfig(**TINY, epochs=1, steps_per_epoch=2)
    task = SegmentationTask("phantoms", [phantom_sample((16, 16, 16))], 2)
    result = Trainer(model, [task], config).fit()
    assert np.isfinite(result.history[-1]["loss"])


def test_loss_is_low_for_the_right_answer():
    target = torch.zeros(1, 4, 4, 4, dtype=torch.long)
    target[0, 1:3, 1:3, 1:3] = 1
    right = torch.nn.functional.one_hot(target, 2).permute(0, 4, 1, 2, 3).float() * 20 - 10
    assert segmentation_loss(right, target) < 0.01 < segmentation_loss(-right, target)


def test_multi_dataset_pretraining_feeds_fine_tuning(tmp_path, phantom_sample):
    two_class = [phantom_sample((16, 16, 16), seed=s) for s in range(2)]
    three_class = [
        phantom_sample((16, 16, 16), seed=s, num_lesions=2, radius=(3, 4)) for s in range(2)
    ]
    config = TrainConfig(**TINY, epochs=1, steps_per_epoch=4)
    model, result = pretrain(
        {"lesions": ([], 2), "two_lesions": ([], 3)},
        config,
        samples={"lesions": two_class, "two_lesions": three_class},
        output=tmp_path / "pretrained",
    )
    assert set(model.heads) == {"lesions", "two_lesions"}
    assert model(torch.zeros(1, 1, 16, 16, 16), "two_lesions").shape == (1, 3, 16, 16, 16)
    assert result.global_step == 4
    fine = create_model("resnet10", num_classes=4, pretrained=tmp_path / "pretrained")
    assert fine.load_report.missing_encoder == []
    assert any(k.startswith("heads.") for k in fine.load_report.unexpected)
    assert torch.equal(fine.layer1[0].conv1.weight, model.layer1[0].conv1.weight)


def test_classification_fine_tuning_tells_lesion_from_no_lesion(phantom_sample):
    from septet.med3d.training import ClassificationTask, classify

    def case(seed, has_lesion):
        sample = phantom_sample(
            (16, 16, 16), seed=seed, num_lesions=int(has_lesion), radius=(4.0, 6.0), noise=0.2
        )
        return {**sample, "class": int(has_lesion)}

    train = [case(s, s % 2 == 1) for s in range(8)]
    held_out = [case(s, s % 2 == 1) for s in range(20, 26)]
    config = TrainConfig(
        **{**TINY, "batch_size": 4},
        epochs=1,
        steps_per_epoch=25,
        lr=1e-3,
        schedule="cosine",
        jitter=0.0,
    )
    torch.manual_seed(0)
    model = create_model("resnet10", task="classification", num_classes=2)
    Trainer(model, [ClassificationTask("lesion?", train, 2)], config).fit()
    probabilities = [classify(model, s["image"], (16, 16, 16)) for s in held_out]
    assert all(p.shape == (2,) and abs(p.sum() - 1) < 1e-5 for p in probabilities)
    correct = sum(
        int(p.argmax()) == s["class"] for p, s in zip(probabilities, held_out, strict=True)
    )
    assert correct >= 5, probabilities


def test_task_and_head_must_agree(tiny_task):
    config = TrainConfig(**TINY)
    with pytest.raises(ConfigError, match="task='segmentation'"):
        Trainer(
            create_model("resnet10", task="classification", num_classes=2), [tiny_task()], config
        )


def test_config_rejects_unknown_keys_by_name():
    with pytest.raises(ConfigError, match=r"unknown training config key.*learning_rate"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="precision 'fp16' is unknown"):
        TrainConfig(precision="fp16")
    assert TrainConfig.from_dict({"patch_size": [16, 16, 16]}).patch_size == (16, 16, 16)
