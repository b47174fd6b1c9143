"""``septet med3d``: pretrain, train, predict, eval, and a weights check, each a thin layer
over the public API. Heavy imports happen inside the commands."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from septet.errors import ConfigError

app = typer.Typer(no_args_is_help=True, add_completion=False)


def _config(config_file: Path | None, overrides: dict[str, object]):
    from septet.med3d.config import TrainConfig

    values: dict[str, object] = {}
    if config_file is not None:
        try:
            values = json.loads(config_file.read_text())
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"cannot read config file {config_file}: {error}") from error
        if not isinstance(values, dict):
            raise ConfigError(f"{config_file} must hold a JSON object of training settings")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig.from_dict(values)


def _triple(text: str | None, name: str, kind=float):
    if text is None:
        return None
    parts = text.replace("x", ",").split(",")
    if len(parts) == 1:
        parts = parts * 3
    try:
        values = tuple(kind(p) for p in parts)
    except ValueError as error:
        raise ConfigError(f"--{name} {text!r} must be one number or three like 32,32,32") from error
    if len(values) != 3:
        raise ConfigError(f"--{name} {text!r} must be one number or three like 32,32,32")
    return values


def _pair(text: str | None, name: str):
    if text is None:
        return None
    try:
        center, width = (float(p) for p in text.split(","))
    except ValueError as error:
        raise ConfigError(
            f"--{name} {text!r} must be center,width in HU, e.g. -600,1500"
        ) from error
    return center, width


ModelOption = typer.Option(None, "--model", "-m", help="resnet10 … resnet200.")
LargestComponentOption = typer.Option(
    False,
    "--largest-component",
    help="Keep only each class's largest connected component (single-lesion tasks).",
)
PatchOption = typer.Option(None, "--patch", help="Patch size, e.g. 32 or 48,48,32.")
SpacingOption = typer.Option(
    None, "--spacing", help="Resample to this spacing in mm, e.g. 2 or 1,1,3."
)
WindowOption = typer.Option(
    None, "--ct-window", help="CT window center,width in HU instead of z-score."
)
EpochsOption = typer.Option(None, "--epochs")
StepsOption = typer.Option(None, "--steps", help="Steps per epoch.")
LrOption = typer.Option(None, "--lr")
BatchOption = typer.Option(None, "--batch-size")
ConfigOption = typer.Option(None, "--config", help="JSON file of TrainConfig settings.")
DeviceOption = typer.Option(None, "--device", help="cpu, cuda, cuda:1, mps [default: best].")


@app.command()
def train(
    data: Path = typer.Argument(..., help="List file, dataset folder, or pyradiomics archive."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the trained model."),
    num_classes: int = typer.Option(None, "--num-classes"),
    pretrained: str = typer.Option(None, "--pretrained", help="MedicalNet/MONAI/septet weights."),
    validation: Path = typer.Option(None, "--val", help="Labelled cases scored each epoch."),
    freeze_epochs: int = typer.Option(
        None, "--freeze-epochs", help="Epochs with the encoder frozen."
    ),
    head_lr_multiplier: float = typer.Option(None, "--head-lr-multiplier"),
    checkpoint_dir: str = typer.Option(
        None, "--checkpoint-dir", help="Where to keep resumable state."
    ),
    resume: Path = typer.Option(None, "--resume", help="Continue from a --checkpoint-dir folder."),
    model: str = ModelOption,
    patch: str = PatchOption,
    spacing: str = SpacingOption,
    ct_window: str = WindowOption,
    epochs: int = EpochsOption,
    steps: int = StepsOption,
    lr: float = LrOption,
    batch_size: int = BatchOption,
    device: str = DeviceOption,
    config_file: Path = ConfigOption,
) -> None:
    """Fine-tune or train a ResNet (segmentation; classification for class-index lists)."""
    from septet.med3d.datasets import load_cases
    from septet.med3d.training import train as run_train
    from septet.med3d.training import train_classifier

    config = _config(
        config_file,
        {
            "model": model,
            "num_classes": num_classes,
            "pretrained": pretrained,
            "freeze_encoder_epochs": freeze_epochs,
            "head_lr_multiplier": head_lr_multiplier,
            "checkpoint_dir": checkpoint_dir,
            "patch_size": _triple(patch, "patch", int),
            "spacing": _triple(spacing, "spacing"),
            "ct_window": _pair(ct_window, "ct-window"),
            "epochs": epochs,
            "steps_per_epoch": steps,
            "lr": lr,
            "batch_size": batch_size,
            "device": device,
        },
    )
    cases = load_cases(data)
    if cases and all("class" in r for r in cases):
        trained, result = train_classifier(cases, config, output=out, resume=resume)
    else:
        records = [r for r in cases if "label" in r]
        if not records:
            raise ConfigError(
                f"{data} has no labelled cases to train on (label volumes or class indices)"
            )
        val = [r for r in load_cases(validation) if "label" in r] if validation else []
        trained, result = run_train(records, config, validation=val, output=out, resume=resume)
    if trained.load_report is not None:
        typer.echo(trained.load_report.summary())
    for row in result.history:
        typer.echo(json.dumps(row))
    typer.echo(f"saved {out}")


@app.command()
def pretrain(
    dataset: list[str] = typer.Option(
        ..., "--dataset", "-d", help="NAME=PATH:CLASSES, once per dataset (one head each)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the pretrained model."),
    model: str = ModelOption,
    patch: str = PatchOption,
    spacing: str = SpacingOption,
    epochs: int = EpochsOption,
    steps: int = StepsOption,
    lr: float = LrOption,
    batch_size: int = BatchOption,
    device: str = DeviceOption,
    config_file: Path = ConfigOption,
) -> None:
    """Pretrain one shared encoder on several datasets, one head per dataset (Med3D)."""
    from septet.med3d.datasets import load_cases
    from septet.med3d.pretraining import pretrain as run_pretrain

    config = _config(
        config_file,
        {
            "model": model,
            "patch_size": _triple(patch, "patch", int),
            "spacing": _triple(spacing, "spacing"),
            "epochs": epochs,
            "steps_per_epoch": steps,
            "lr": lr,
            "batch_size": batch_size,
            "device": device,
        },
    )
    datasets = {}
    for spec in dataset:
        name, sep, rest = spec.partition("=")
        path, sep2, classes = rest.rpartition(":")
        if not sep or not sep2 or not classes.isdigit():
            raise ConfigError(
                f"--dataset {spec!r} must look like NAME=PATH:CLASSES, e.g. aal=aal.txt:117"
            )
        datasets[name] = ([r for r in load_cases(path) if "label" in r], int(classes))
    _, result = run_pretrain(datasets, config, output=out)
    for row in result.history:
        typer.echo(json.dumps(row))
    typer.echo(f"saved {out} (heads: {', '.join(datasets)})")


@app.command()
def predict(
    model_dir: Path = typer.Argument(..., help="A model folder written by train."),
    image: list[Path] = typer.Argument(..., help="The volume (several for multi-modal input)."),
    out: Path = typer.Option(
        None, "--out", "-o", help="The mask to write (.nii or .nii.gz); segmentation only."
    ),
    largest_component: bool = LargestComponentOption,
    device: str = DeviceOption,
) -> None:
    """Segment a volume into a NIfTI mask on its grid, or classify it."""
    from septet.common.device import choose_device
    from septet.med3d.inference import predict_file
    from septet.med3d.weights import load_model

    model = load_model(model_dir).to(choose_device(device))
    config = _model_config(model, largest_component=largest_component)
    sources = [str(p) for p in image]
    if model.config.task == "classification":
        from septet.med3d.training import classify
        from septet.med3d.transforms import preprocessing

        pipeline = preprocessing(config.spacing, ct_window=config.ct_window, with_label=False)
        sample = pipeline({"image": sources if len(sources) > 1 else sources[0]})
        probabilities = classify(model, sample["image"], config.patch_size)
        typer.echo(
            json.dumps(
                {
                    "class": int(probabilities.argmax()),
                    "probabilities": [round(float(p), 4) for p in probabilities],
                }
            )
        )
        return
    if out is None:
        raise ConfigError("a segmentation model writes a mask: pass --out mask.nii.gz")
    predict_file(model, sources if len(sources) > 1 else sources[0], out, config)
    typer.echo(f"wrote {out}")


@app.command("eval")
def evaluate(
    model_dir: Path = typer.Argument(..., help="A model folder written by train."),
    data: Path = typer.Argument(..., help="Labelled cases: list file, folder, or archive."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per case."),
    largest_component: bool = LargestComponentOption,
    device: str = DeviceOption,
) -> None:
    """Dice and HD95 (mm) per case and class, on each case's own grid."""
    import math

    from septet.common.device import choose_device
    from septet.med3d.datasets import load_cases
    from septet.med3d.inference import evaluate_records
    from septet.med3d.weights import load_model

    model = load_model(model_dir).to(choose_device(device))
    if model.config.task == "classification":
        _evaluate_classifier(model, load_cases(data), as_json)
        return
    records = [r for r in load_cases(data) if "label" in r]
    if not records:
        raise ConfigError(f"{data} has no labelled cases to evaluate")
    rows = evaluate_records(
        model, records, _model_config(model, largest_component=largest_component)
    )
    for row in rows:
        if as_json:
            typer.echo(json.dumps(row))
        else:
            dice = " ".join(f"{d:.3f}" for d in row["dice"])
            hd = " ".join("inf" if math.isinf(h) else f"{h:.1f}" for h in row["hd95_mm"])
            typer.echo(f"{row['case']}: dice {dice}  hd95_mm {hd}")
    means = [r["dice_mean"] for r in rows if not math.isnan(r["dice_mean"])]
    if not as_json and means:
        typer.echo(f"mean dice {sum(means) / len(means):.3f} over {len(means)} cases")


@app.command()
def weights(
    checkpoint: str = typer.Argument(..., help="A MedicalNet .pth, MONAI .pt, or septet folder."),
    model: str = typer.Option("resnet50", "--model", "-m"),
    in_channels: int = typer.Option(1, "--in-channels"),
) -> None:
    """Load a checkpoint into a model and report what loaded and what did not."""
    from septet.med3d.registry import create_model

    built = create_model(
        model, in_channels=in_channels, pretrained=checkpoint, strict_encoder=False
    )
    report = built.load_report
    typer.echo(report.summary())
    for name in ("missing_encoder", "mismatched", "unexpected", "adapted"):
        for item in getattr(report, name)[:20]:
            typer.echo(f"  {name}: {item}")


@app.command("models")
def models() -> None:
    """The model names create_model accepts, with encoder parameter counts."""
    import torch

    from septet.med3d.registry import create_model, list_models

    for name in list_models():
        with torch.device("meta"):
            built = create_model(name, task="features")
        count = sum(p.numel() for p in built.encoder_parameters())
        typer.echo(f"{name:<10} {count / 1e3:,.0f}k encoder parameters (1 input channel)")


def _evaluate_classifier(model, records, as_json: bool) -> None:
    from septet.med3d.training import classify
    from septet.med3d.transforms import preprocessing

    records = [r for r in records if "class" in r]
    if not records:
        raise ConfigError("a classification model needs cases with a class index to evaluate")
    config = _model_config(model)
    pipeline = preprocessing(config.spacing, ct_window=config.ct_window, with_label=False)
    correct = 0
    for record in records:
        sample = pipeline({"image": record["image"]})
        probabilities = classify(model, sample["image"], config.patch_size)
        predicted = int(probabilities.argmax())
        correct += predicted == record["class"]
        row = {"case": record["case"], "class": record["class"], "predicted": predicted}
        typer.echo(
            json.dumps(row) if as_json else f"{row['case']}: {predicted} ({record['class']})"
        )
    if not as_json:
        typer.echo(f"accuracy {correct / len(records):.3f} over {len(records)} cases")


def _model_config(model, *, largest_component: bool = False):
    """The TrainConfig that reproduces a saved model's preprocessing and windowing."""
    from septet.med3d.config import TrainConfig

    extra = getattr(model, "extra_config", {}) or {}
    pre = extra.get("preprocessing") or {}
    return TrainConfig(
        num_classes=model.config.num_classes,
        in_channels=model.config.in_channels,
        patch_size=tuple(extra.get("patch_size") or (64, 64, 64)),
        spacing=pre.get("spacing"),
        ct_window=pre.get("ct_window"),
        overlap=extra.get("overlap", 0.5),
        blend=extra.get("blend", "gaussian"),
        largest_component=largest_component,
    )
