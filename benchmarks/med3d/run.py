"""med3d benchmark: Med3D's recipe at CPU scale.

1. Pretrain one ResNet-10 encoder with two heads (Med3D's multi-dataset pretraining): the
   MNI152 2009a template (nilearn ships it) with its grey/white-matter maps as a 3-class
   tissue head, and the Colin27 brain with the AAL atlas (Debian ``mricron-data``) as a
   117-class region head.
2. Fine-tune on the five pyradiomics lesion volumes (brain MR ×2, breast MR, lung CT ×2),
   leave one volume out: train on four, score the fifth on its own grid (Dice, HD95 in mm),
   once from scratch and once from the pretrained encoder, same seed, same steps, same
   patches.
3. Training throughput (voxels per second) of ResNet-10, -18 and -50, side by side.

Setup (once): ``apt-get install mricron-data`` (Colin27 + AAL in /usr/share/mricron/templates)
and ``pip install nilearn`` (in septet's ``dev`` extra). No network at run time.

Scaled to a shared 2-core CPU and about 20 minutes (the paper trains for days on 8 GPUs):
every volume resampled to 3 mm isotropic voxels, 24³ patches, batch 2, one torch thread,
ResNet-10 only for the transfer experiment, 160 pretraining steps and 80 fine-tuning steps
per arm and fold (all settable; the numbers used are written into the results).
Run: ``make bench PART=med3d``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from septet.common.report import write_benchmark_results
from septet.common.seeding import seed_everything
from septet.med3d.config import TrainConfig
from septet.med3d.datasets import load_cases
from septet.med3d.inference import evaluate_samples
from septet.med3d.pretraining import pretrain
from septet.med3d.registry import create_model
from septet.med3d.training import SegmentationTask, Trainer
from septet.med3d.transforms import (
    Compose,
    LoadVolumed,
    NormalizeIntensityd,
    Orientationd,
    Spacingd,
    WindowIntensityd,
)
from septet.med3d.volume_io import Volume, read_volume

REPO = Path(__file__).resolve().parents[2]
MRICRON = Path("/usr/share/mricron/templates")
LUNG_WINDOW = (-600.0, 1500.0)  # HU centre, width


_START = time.perf_counter()


def say(message: str) -> None:
    """Progress on stdout with the minutes since the start, so slow stages show."""
    print(f"[{(time.perf_counter() - _START) / 60:5.1f} min] {message}", flush=True)


def nilearn_data() -> Path:
    try:
        import nilearn
    except ImportError:
        sys.exit("this benchmark needs nilearn (pip install nilearn): it ships the MNI152 maps")
    return Path(nilearn.__file__).parent / "datasets" / "data"


def pipeline(spacing: float, ct: bool) -> Compose:
    """Canonical orientation, isotropic spacing, then a lung window + z-score for CT or a
    foreground z-score for MR."""
    steps = [LoadVolumed(), Orientationd(), Spacingd((spacing,) * 3)]
    if ct:
        steps += [WindowIntensityd(*LUNG_WINDOW), NormalizeIntensityd(foreground_only=False)]
    else:
        steps.append(NormalizeIntensityd())
    return Compose(steps)


def atlas_samples(spacing: float) -> dict[str, tuple[list[dict], int]]:
    """The two pretraining datasets: MNI152 tissue (3 classes) and Colin27 AAL (117)."""
    data = nilearn_data()
    t1 = read_volume(data / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    gm = read_volume(data / "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz").data / 255.0
    wm = read_volume(data / "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz").data / 255.0
    background = np.clip(1.0 - gm - wm, 0.0, 1.0)
    tissue = np.argmax(np.stack([background, gm, wm]), axis=0).astype(np.int64)
    if not (MRICRON / "aal.nii.gz").exists():
        sys.exit("this benchmark needs Debian mricron-data (apt-get install mricron-data)")
    colin = read_volume(MRICRON / "ch2.nii.gz")
    aal = read_volume(MRICRON / "aal.nii.gz")
    prepare = pipeline(spacing, ct=False)
    mni = prepare({"image": t1, "label": Volume(tissue, t1.affine)})
    col = prepare({"image": colin, "label": aal})
    return {"mni152_tissue": ([mni], 3), "colin27_aal": ([col], 117)}


def lesion_cases(source: Path, spacing: float) -> list[dict]:
    """The pyradiomics volumes, preprocessed, with their original labels kept for scoring."""
    cases = []
    for record in load_cases(source):
        image = (
            record["image"] if isinstance(record["image"], Volume) else read_volume(record["image"])
        )
        label = (
            record["label"] if isinstance(record["label"], Volume) else read_volume(record["label"])
        )
        ct = record["case"].startswith("lung") or float(np.min(image.data)) < -500
        sample = pipeline(spacing, ct)({"image": image, "label": label})
        sample["case"] = record["case"]
        cases.append(
            {
                "case": record["case"],
                "modality": "CT" if ct else "MR",
                "sample": sample,
                "original_label": (np.asarray(label.data) > 0).astype(np.int64),
                "lesion_voxels": int((np.asarray(label.data) > 0).sum()),
                "lesion_voxels_resampled": int(sample["label"].sum()),
            }
        )
    return cases


def fine_tune(encoder: Path | None, train_samples: list[dict], config: TrainConfig, seed: int):
    seed_everything(seed)  # the same head initialisation for scratch and pretrained
    model = create_model("resnet10", num_classes=2, pretrained=encoder)
    task = SegmentationTask("lesions", train_samples, 2)
    trainer = Trainer(model, [task], config, pretrained_encoder=encoder is not None)
    started = time.perf_counter()
    result = trainer.fit()
    return model, result, time.perf_counter() - started


def throughput(models: list[str], patch: int, steps: int) -> list[dict]:
    """Training voxels per second, each model on the same synthetic batches."""
    from septet.med3d.phantoms import make_phantom

    samples = []
    for seed in range(2):
        image, label = make_phantom((patch,) * 3, seed=seed)
        samples.append({"image": image[None], "label": label, "affine": np.eye(4), "meta": {}})
    rows = []
    for name in models:
        config = TrainConfig(
            model=name,
            patch_size=(patch,) * 3,
            batch_size=2,
            epochs=1,
            steps_per_epoch=steps + 1,
            rotate_degrees=0,
            jitter=0,
        )
        model = create_model(name, num_classes=2)
        trainer = Trainer(model, [SegmentationTask("phantoms", samples, 2)], config)
        trainer.fit(stop_after_steps=1)  # warm-up: allocations, kernel selection
        started = time.perf_counter()
        trainer.fit(stop_after_steps=steps)
        seconds = (time.perf_counter() - started) / steps
        rows.append(
            {
                "model": name,
                "parameters_M": sum(p.numel() for p in model.parameters()) / 1e6,
                "seconds_per_step": seconds,
                "voxels_per_second": 2 * patch**3 / seconds,
            }
        )
        say(f"throughput {name}: {rows[-1]['voxels_per_second']:.0f} voxels/s")
        del trainer, model
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--pyradiomics",
        type=Path,
        default=Path(os.environ.get("SEPTET_PYRADIOMICS", REPO.parent / "shared/data/pyradiomics")),
        help="folder of <case>_image/_label.nrrd, or pyradiomics-3.1.0.tar.gz",
    )
    parser.add_argument("--spacing", type=float, default=3.0, help="mm, isotropic")
    parser.add_argument("--patch", type=int, default=24)
    parser.add_argument("--pretrain-steps", type=int, default=160)
    parser.add_argument("--finetune-steps", type=int, default=80)
    parser.add_argument("--throughput-steps", type=int, default=2)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (on a shared 2-core box more threads mostly contend)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    patch = (args.patch,) * 3
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"septet-med3d-bench-{os.getpid()}"

    # 1. Pretraining on the atlases, one head per dataset.
    atlases = atlas_samples(args.spacing)
    say("atlases preprocessed")
    pre_config = TrainConfig(
        model="resnet10",
        patch_size=patch,
        batch_size=2,
        epochs=4,
        steps_per_epoch=max(1, args.pretrain_steps // 4),
        lr=1e-3,
        schedule="cosine",
        pos_fraction=0.0,
        seed=args.seed,
    )
    t0 = time.perf_counter()
    model, pre_result = pretrain(
        {name: ([], classes) for name, (_, classes) in atlases.items()},
        pre_config,
        samples={name: samples for name, (samples, _) in atlases.items()},
        output=work / "pretrained",
    )
    pretrain_seconds = time.perf_counter() - t0
    say(f"pretrained {pre_result.global_step} steps")
    pre_rows = []
    for name, (samples, classes) in atlases.items():
        scores = evaluate_samples(
            model,
            samples,
            TrainConfig(patch_size=(64, 64, 64), overlap=0.25),
            hd95=False,
            dataset=name,
        )
        pre_rows.append(
            {
                "head": name,
                "classes": classes,
                "grid": "x".join(map(str, samples[0]["label"].shape)),
                "train_dice_mean": scores[0]["dice_mean"],
            }
        )
        say(f"pretrain {name}: dice {scores[0]['dice_mean']:.3f}")
    del model

    # 2. Leave-one-volume-out fine-tuning, scratch vs pretrained.
    cases = lesion_cases(args.pyradiomics, args.spacing)
    say(f"{len(cases)} lesion volumes preprocessed")
    ft_config = TrainConfig(
        model="resnet10",
        patch_size=patch,
        batch_size=2,
        epochs=1,
        steps_per_epoch=args.finetune_steps,
        lr=1e-3,
        head_lr_multiplier=1.0,
        schedule="cosine",
        pos_fraction=0.67,
        seed=args.seed,
    )
    eval_config = TrainConfig(patch_size=(64, 64, 64), overlap=0.25)
    rows = []
    for held_out in cases:
        train_samples = [c["sample"] for c in cases if c is not held_out]
        row = {
            "held_out": held_out["case"],
            "modality": held_out["modality"],
            "lesion_voxels": held_out["lesion_voxels"],
            "lesion_voxels_3mm": held_out["lesion_voxels_resampled"],
        }
        for arm, encoder in (("scratch", None), ("pretrained", work / "pretrained")):
            fitted, result, seconds = fine_tune(encoder, train_samples, ft_config, args.seed)
            # Scored on the 3 mm grid the networks saw: resampling probabilities back to the
            # 512×512 CT grids and HD95 there cost more CPU than the training itself.
            score = evaluate_samples(fitted, [held_out["sample"]], eval_config)[0]
            row[f"dice_{arm}"] = score["dice"][0]
            row[f"hd95_mm_{arm}"] = score["hd95_mm"][0]
            row[f"final_loss_{arm}"] = result.history[-1]["loss"]
            say(f"{held_out['case']} {arm}: dice {score['dice'][0]:.3f} ({seconds:.0f} s training)")
        rows.append(row)
    mean_scratch = float(np.mean([r["dice_scratch"] for r in rows]))
    mean_pretrained = float(np.mean([r["dice_pretrained"] for r in rows]))
    wins = sum(r["dice_pretrained"] > r["dice_scratch"] for r in rows)

    # 3. Throughput.
    speed = throughput(["resnet10", "resnet18", "resnet50"], args.patch, args.throughput_steps)

    total = time.perf_counter() - started
    verdict = (
        f"pretrained beats scratch on mean Dice ({mean_pretrained:.3f} vs {mean_scratch:.3f}; "
        f"better on {wins} of {len(rows)} volumes)"
        if mean_pretrained > mean_scratch
        else f"pretrained does NOT beat scratch on mean Dice ({mean_pretrained:.3f} vs "
        f"{mean_scratch:.3f}; better on {wins} of {len(rows)} volumes)"
    )
    results = {
        "scale": {
            "spacing_mm": args.spacing,
            "patch": args.patch,
            "batch_size": 2,
            "pretrain_steps": pre_result.global_step,
            "finetune_steps": args.finetune_steps,
            "threads": args.threads,
            "model": "resnet10",
        },
        "pretraining": {
            "rows": pre_rows,
            "seconds": pretrain_seconds,
            "history": pre_result.history,
        },
        "leave_one_volume_out": rows,
        "mean_dice_scratch": mean_scratch,
        "mean_dice_pretrained": mean_pretrained,
        "pretrained_wins": wins,
        "verdict": verdict,
        "throughput": speed,
        "seconds_total": total,
    }
    mean_row = {
        "held_out": "mean",
        "dice_scratch": mean_scratch,
        "dice_pretrained": mean_pretrained,
    }
    notes = f"""## Verdict

{verdict}.

## What was scaled (MedicalNet: 23 datasets, 3D volumes at full resolution, 8 GPUs, days)

- All volumes resampled to {args.spacing:g} mm isotropic voxels; patches {args.patch}³, batch 2,
  one torch thread on a shared 2-core CPU; ResNet-10 for the transfer experiment.
- Pretraining: {pre_result.global_step} steps alternating the two heads (MNI152 tissue, 3
  classes; Colin27 AAL, 117 classes), AdamW lr 1e-3, cosine; one volume per dataset, so
  variety comes from random crops, flips, ±10° rotations and intensity jitter.
- Fine-tuning: {args.finetune_steps} steps per arm and fold, AdamW lr 1e-3 (no extra rate for the
  head, so the only difference between the arms is the encoder's starting point), crops
  centred on lesion voxels 2/3 of the time; scored with 64³ sliding windows (25% overlap,
  Gaussian blending), Dice and HD95 on the {args.spacing:g} mm grid the networks saw
  (`septet med3d eval` scores on each volume's own grid; here that would cost more CPU than
  the training).

## Why the numbers look like this

Five lesion volumes of three kinds (brain MR, breast MR, lung CT) are a very small and
mixed training set: each fold trains on four volumes and tests on a fifth that may be the
only one of its kind (breast1) or whose lesion is a few voxels at 3 mm. MedicalNet's head
predicts on a grid 4× coarser than the input ({4 * args.spacing:g} mm here), which erases
small lesions. The pretraining is minutes, not days, on two atlases of healthy brains, so
whatever it transfers is mostly low-level (intensity edges, brain MR texture); expect it to
help the brain folds most. Scores differ between runs mainly by the seed; treat
differences of a few hundredths as noise. HD95 `inf` means the network predicted no lesion
voxel at all on that volume; a final loss near 1 means the Dice part has not started to fall.

Total wall time {total / 60:.1f} min.
"""
    kwargs = {"results_dir": args.out} if args.out else {}
    json_path, md_path = write_benchmark_results(
        "med3d",
        results,
        {
            "Leave-one-volume-out Dice (ResNet-10, equal steps)": [*rows, mean_row],
            "Pretraining heads (Dice on the training atlas)": pre_rows,
            f"Training throughput ({args.patch}³ patches, batch 2)": speed,
        },
        notes=notes,
        **kwargs,
    )
    print(f"{verdict}\nwrote {json_path} and {md_path} in {total / 60:.1f} min")


if __name__ == "__main__":
    main()
