"""The shared training loop: exact resume, schedules, accumulation, best checkpoint, early
stopping, atomic checkpoints, bf16 autocast and clear configuration errors."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from septet.common.training import (
    OptimizerConfig,
    Trainer,
    TrainerCallback,
    TrainingConfig,
    TrainingDivergedError,
    WarmupDecay,
    list_checkpoints,
    load_model_weights,
)
from septet.errors import CheckpointError, ConfigError


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The models here are tiny: one torch thread is faster than two fighting on a shared CPU."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def regression_data(samples: int = 37, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 6, generator=generator)
    y = x @ torch.randn(6, 1, generator=generator) + 0.1 * torch.randn(
        samples, 1, generator=generator
    )
    return TensorDataset(x, y)


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    # Dropout makes the result depend on the RNG stream, which resume must restore.
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 1))


def mse_loss(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


class StopAt(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, state, logs):
        if state.step == self.step:
            state.should_stop = True


def config_for(tmp_path, **overrides) -> TrainingConfig:
    values = dict(
        epochs=3,
        gradient_accumulation_steps=3,
        checkpoint_dir=str(tmp_path / "checkpoints"),
        log_every=1,
        seed=11,
        optimizer=OptimizerConfig(learning_rate=0.05, warmup_steps=2, schedule="cosine"),
    )
    values.update(overrides)
    return TrainingConfig(**values)


@pytest.mark.parametrize("stop_at", [4, 5, 11])
@pytest.mark.parametrize("own_generator", [False, True])
def test_resume_after_k_steps_gives_identical_weights(tmp_path, stop_at, own_generator):
    # 37 samples in batches of 4 is 10 micro-batches an epoch; accumulating 3 makes 4 steps an
    # epoch (the last of 1 micro-batch), so step 4 ends an epoch and step 5 is mid-epoch.
    def loader():
        generator = torch.Generator().manual_seed(3) if own_generator else None
        return DataLoader(regression_data(), batch_size=4, shuffle=True, generator=generator)

    uninterrupted = make_model(seed=1)
    Trainer(uninterrupted, mse_loss, loader(), config_for(tmp_path / "a")).train()

    interrupted = make_model(seed=1)
    first = Trainer(
        interrupted, mse_loss, loader(), config_for(tmp_path / "b"), callbacks=[StopAt(stop_at)]
    ).train()
    assert first.state.step == stop_at
    assert not all(
        torch.equal(p, q)
        for p, q in zip(interrupted.parameters(), uninterrupted.parameters(), strict=True)
    )

    # A new process would start from a differently initialised model: resume must overwrite it.
    resumed = make_model(seed=99)
    second = Trainer(resumed, mse_loss, loader(), config_for(tmp_path / "b")).train(
        resume_from="latest"
    )
    assert second.state.step == 12
    expected_weights = uninterrupted.state_dict()
    for name, got in resumed.state_dict().items():
        assert torch.equal(got, expected_weights[name]), name
    assert [h["step"] for h in second.history] == list(range(1, 13))


def test_schedule_warms_up_then_decays_to_the_floor():
    linear = WarmupDecay(warmup_steps=4, total_steps=14, schedule="linear", min_ratio=0.1)
    values = [linear(step) for step in range(15)]
    assert values[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert values[4] == pytest.approx(1.0)
    assert values[9] == pytest.approx(0.1 + 0.9 * 0.5)
    assert values[14] == pytest.approx(0.1)
    assert all(a >= b for a, b in itertools.pairwise(values[4:]))
    cosine = WarmupDecay(warmup_steps=0, total_steps=10, schedule="cosine", min_ratio=0.0)
    assert cosine(5) == pytest.approx(0.5)
    assert cosine(10) == pytest.approx(0.0)
    assert WarmupDecay(2, 10, "constant", 0.0)(7) == 1.0


def test_training_reduces_the_loss_and_logs_the_learning_rate(tmp_path):
    model = nn.Linear(6, 1)
    data = DataLoader(regression_data(200), batch_size=16, shuffle=True)
    config = TrainingConfig(
        epochs=8,
        log_every=1,
        optimizer=OptimizerConfig(learning_rate=0.05, warmup_ratio=0.1, weight_decay=0.0),
    )

    def evaluate(model):
        x, y = regression_data(200).tensors
        return {"mse": nn.functional.mse_loss(model(x), y).item()}

    result = Trainer(model, mse_loss, data, config, evaluate=evaluate).train()
    assert result.state.step == 8 * 13
    assert result.history[-1]["loss"] < result.history[0]["loss"] / 10
    assert result.evaluations[-1]["mse"] < 0.05
    rates = [entry["learning_rate"] for entry in result.history]
    warmup = int(0.1 * 8 * 13)
    assert rates[:warmup] == sorted(rates[:warmup])  # rising during warmup
    assert rates[warmup] == pytest.approx(0.05)  # the peak, then linear decay towards 0
    assert rates[warmup:] == sorted(rates[warmup:], reverse=True)
    assert rates[-1] == pytest.approx(0.05 / (8 * 13 - warmup))


def test_gradient_accumulation_matches_a_larger_batch():
    data = regression_data(32)
    weights = []
    for batch_size, accumulation in ((8, 1), (4, 2), (2, 4)):
        torch.manual_seed(0)
        model = nn.Linear(6, 1)
        config = TrainingConfig(
            epochs=2,
            gradient_accumulation_steps=accumulation,
            optimizer=OptimizerConfig(learning_rate=0.01, max_grad_norm=None),
        )
        Trainer(model, mse_loss, DataLoader(data, batch_size=batch_size), config).train()
        weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    torch.testing.assert_close(weights[1], weights[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weights[2], weights[0], rtol=1e-5, atol=1e-6)


def test_best_checkpoint_is_kept_and_early_stopping_stops(tmp_path):
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.9])

    def evaluate(model):
        return {"accuracy": next(scores)}

    model = make_model(seed=0)
    config = TrainingConfig(
        epochs=10,
        checkpoint_dir=str(tmp_path),
        checkpoint_every=1,
        keep_checkpoints=1,
        eval_every=2,
        best_metric="accuracy",
        early_stopping_patience=2,
    )
    data = DataLoader(regression_data(16), batch_size=4)
    result = Trainer(model, mse_loss, data, config, evaluate=evaluate).train()
    # Evaluations at steps 2, 4, 6, 8: best at 4, then two without improvement -> stop at 8.
    assert [e["step"] for e in result.evaluations] == [2, 4, 6, 8]
    assert result.state.step == 8
    assert result.state.best_step == 4 and result.state.best_metric == 0.7
    assert json.loads((tmp_path / "best.json").read_text())["step"] == 4
    assert result.best_checkpoint == tmp_path / "step-00000004"
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000004", "step-00000008"]
    load_model_weights(model, result.best_checkpoint)


def test_a_crash_while_saving_leaves_no_partial_checkpoint(tmp_path, monkeypatch):
    model = make_model(seed=0)
    config = TrainingConfig(max_steps=3, checkpoint_dir=str(tmp_path), checkpoint_every=1)
    data = DataLoader(regression_data(16), batch_size=4)
    trainer = Trainer(model, mse_loss, data, config, callbacks=[StopAt(2)])
    trainer.train()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert before == ["step-00000001", "step-00000002"]

    real_save = torch.save

    def failing_save(obj, handle, *args, **kwargs):
        if "state" in obj:  # the training state, written after the weights
            raise OSError("disk full")
        return real_save(obj, handle, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_save)
    resumed = Trainer(make_model(seed=0), mse_loss, data, config)
    with pytest.raises(OSError, match="disk full"):
        resumed.train(resume_from="latest")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_bf16_autocast_on_cpu(tmp_path):
    seen = []

    def loss(model, batch):
        x, y = batch
        out = model(x)
        seen.append(out.dtype)
        return nn.functional.mse_loss(out.float(), y)

    config = TrainingConfig(max_steps=3, precision="bf16")
    result = Trainer(
        nn.Linear(6, 1), loss, DataLoader(regression_data(12), batch_size=4), config
    ).train()
    assert seen == [torch.bfloat16] * 3
    assert math.isfinite(result.history[-1]["loss"])


def test_configuration_errors_name_the_setting(tmp_path):
    with pytest.raises(ConfigError, match="'epoch'"):
        TrainingConfig.from_dict({"epoch": 3})
    with pytest.raises(ConfigError, match="'lr'"):
        TrainingConfig.from_dict({"optimizer": {"lr": 1e-3}})
    with pytest.raises(ConfigError, match="schedule"):
        OptimizerConfig(schedule="exponential")
    with pytest.raises(ConfigError, match="best_metric"):
        TrainingConfig(early_stopping_patience=2)
    with pytest.raises(ConfigError, match="max_steps"):
        Trainer(nn.Linear(6, 1), mse_loss, iter([]), TrainingConfig())
    config = TrainingConfig(max_steps=2, best_metric="f1")
    with pytest.raises(ConfigError, match="'f1' is not among"):
        Trainer(
            nn.Linear(6, 1),
            mse_loss,
            DataLoader(regression_data(8), batch_size=4),
            config,
            evaluate=lambda model: {"accuracy": 1.0},
        ).train()
    with pytest.raises(CheckpointError, match="no checkpoints"):
        Trainer(
            nn.Linear(6, 1),
            mse_loss,
            [],
            TrainingConfig(max_steps=1, checkpoint_dir=str(tmp_path)),
        ).train(resume_from="latest")


def test_a_diverging_loss_stops_with_a_clear_error():
    def loss(model, batch):
        return model(batch[0]).sum() * float("nan")

    with pytest.raises(TrainingDivergedError, match="step 1"):
        Trainer(nn.Linear(6, 1), loss, DataLoader(regression_data(8), batch_size=4)).train()
