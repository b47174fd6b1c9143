"""med3d benchmark: Med3D's recipe at CPU scale.

1. Pretrain one ResNet-10 encoder with two heads (Med3D's multi-dataset pretraining): the
   MNI152 2009a template (nilearn ships it) with its grey/white-matter maps as a 3-class
   tissue head, and the Colin27 brain with the AAL atlas (Debian ``mricron-data``) as a
   117-class region head.
2. Fine-tune on the five pyradiomics lesion volumes (brain MR ×2, breast MR, lung CT ×2),
   leave one volume out: train on four, predict the fifth whole with sliding windows and
   score it (Dice on the grid the network saw and on the volume's own grid, HD95 in mm),
   once from scratch and once from the pretrained encoder: same seed, same steps, same
   patches, same head learning rate.
3. Training throughput (voxels per second) of ResNet-10, -18 and -50, side by side.

Setup (once): ``apt-get install mricron-data`` (Colin27 + AAL in /usr/share/mricron/templates)
and ``pip install nilearn`` (in septet's ``dev`` extra). No network at run time.

What makes the lesions learnable at CPU scale (session 1's 3 mm / 64³-window run scored
Dice ≈ 0 in both arms): 2 mm voxels; the loss on logits resized to the patch (the library's
default); crops centred on a lesion half of the time; per-modality intensities (lung window
then z-score for CT, foreground z-score for MR); and inference windows of the training
patch size, because MedicalNet's dilated layer3/layer4 see mostly zero padding on a small
patch and behave differently on a larger window.

Results are rewritten after every fold (``"partial": true`` until the end), so a run stopped
early still leaves numbers. Run: ``make bench PART=med3d``.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch

from septet.common.report import write_benchmark_results
from septet.common.seeding import seed_everything
from septet.med3d.config import TrainConfig
from septet.med3d.datasets import load_cases
from septet.med3d.inference import predict_probabilities, restore_original_grid
from septet.med3d.metrics import dice_score, hausdorff95_per_class
from septet.med3d.postprocessing import largest_component
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


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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
                "kind": "".join(ch for ch in record["case"] if not ch.isdigit()),
                "modality": "CT" if ct else "MR",
                "sample": sample,
                "original_label": (np.asarray(label.data) > 0).astype(np.uint8),
                "lesion_voxels": int((np.asarray(label.data) > 0).sum()),
                "lesion_voxels_resampled": int(sample["label"].sum()),
            }
        )
    return cases


def score(model, case: dict, patch: int, overlap: float) -> dict:
    """Sliding-window prediction of the whole held-out volume, scored on the resampled grid
    (Dice, HD95) and on the volume's own grid (Dice), raw and with only the largest
    connected component kept."""
    sample = case["sample"]
    probs = predict_probabilities(model, sample["image"], roi_size=(patch,) * 3, overlap=overlap)
    prediction = probs.argmax(axis=0).astype(np.uint8)
    target = sample["label"] > 0
    spacing = tuple(float(s) for s in np.sqrt((sample["affine"][:3, :3] ** 2).sum(axis=0)))
    original = restore_original_grid(probs, sample["meta"]) > 0
    return {
        "dice": dice_score(prediction > 0, target),
        "dice_original_grid": dice_score(original, case["original_label"] > 0),
        "dice_largest_component": dice_score(largest_component(prediction > 0), target),
        "hd95_mm": hausdorff95_per_class(prediction, target.astype(np.uint8), 2, spacing)[0],
        "predicted_voxels": int(prediction.sum()),
        "lesion_voxels_hit": int(prediction[target].sum()),
    }


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
        started, cpu = time.perf_counter(), cpu_seconds()
        trainer.fit(stop_after_steps=steps)
        seconds = (time.perf_counter() - started) / steps
        rows.append(
            {
                "model": name,
                "parameters_M": sum(p.numel() for p in model.parameters()) / 1e6,
                "seconds_per_step": seconds,
                "cpu_seconds_per_step": (cpu_seconds() - cpu) / steps,
                "voxels_per_second": 2 * patch**3 / seconds,
            }
        )
        say(f"throughput {name}: {rows[-1]['voxels_per_second']:.0f} voxels/s")
        del trainer, model
    return rows


def schedule(args: argparse.Namespace, steps: int) -> dict:
    """The TrainConfig fields both stages share: ResNet-10, patches, batch, ``steps`` in four
    epochs with a cosine decay, the seed."""
    return dict(
        model="resnet10",
        patch_size=(args.patch,) * 3,
        batch_size=args.batch,
        epochs=4,
        steps_per_epoch=max(1, steps // 4),
        schedule="cosine",
        seed=args.seed,
    )


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--pyradiomics",
        type=Path,
        default=Path(os.environ.get("SEPTET_PYRADIOMICS", REPO.parent / "shared/data/pyradiomics")),
        help="folder of <case>_image/_label.nrrd, or pyradiomics-3.1.0.tar.gz",
    )
    parser.add_argument("--spacing", type=float, default=2.0, help="mm, isotropic")
    parser.add_argument("--patch", type=int, default=24, help="training patch = inference window")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--pretrain-steps", type=int, default=800)
    parser.add_argument("--finetune-steps", type=int, default=480)
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW; the head lr in both arms")
    parser.add_argument(
        "--head-lr-multiplier",
        type=float,
        default=5.0,
        help="pretrained arm: the encoder learns at lr / this (MedicalNet's new-layer multiplier)",
    )
    parser.add_argument("--pos-fraction", type=float, default=0.33, help="crops centred on lesions")
    parser.add_argument("--overlap", type=float, default=0.25, help="sliding-window overlap")
    parser.add_argument("--throughput-steps", type=int, default=3)
    parser.add_argument(
        "--folds", default="", help="comma-separated held-out cases (default all; 'none': skip)"
    )
    parser.add_argument(
        "--pretrained",
        type=Path,
        default=None,
        help="reuse an encoder pretrained by an earlier run (a model folder) instead of stage 1",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (on a shared 2-core box more threads mostly contend)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=None, help="where the encoder is saved")
    parser.add_argument("--out", type=Path, default=None, help="results folder")
    parser.add_argument("--name", default="med3d", help="results file stem (<name>.json, .md)")
    parser.add_argument(
        "--fit-check",
        action="store_true",
        help="also train on all five volumes and score each (is the budget enough to learn "
        "the lesions it sees?)",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    started, cpu_started = time.perf_counter(), cpu_seconds()
    patch = (args.patch,) * 3
    work = args.work or Path(os.environ.get("TMPDIR", "/tmp")) / f"septet-med3d-{os.getpid()}"
    command = " ".join(["python", "benchmarks/med3d/run.py", *sys.argv[1:]])
    results: dict = {
        "command": command,
        "partial": True,
        "scale": {
            "spacing_mm": args.spacing,
            "patch": args.patch,
            "batch_size": args.batch,
            "pretrain_steps": args.pretrain_steps,
            "finetune_steps": args.finetune_steps,
            "lr": args.lr,
            "head_lr_multiplier": args.head_lr_multiplier,
            "pos_fraction": args.pos_fraction,
            "overlap": args.overlap,
            "threads": args.threads,
            "seed": args.seed,
            "model": "resnet10",
        },
    }
    tables: dict[str, list[dict]] = {}

    def write(notes: str = "") -> None:
        results["seconds_total"] = time.perf_counter() - started
        results["cpu_seconds_total"] = cpu_seconds() - cpu_started
        kwargs = {"results_dir": args.out} if args.out else {}
        write_benchmark_results(args.name, results, tables, notes=notes, **kwargs)

    # 0. Throughput first: a minute, and a run stopped late still has it.
    if args.throughput_steps > 0:
        speed = throughput(["resnet10", "resnet18", "resnet50"], args.patch, args.throughput_steps)
        results["throughput"] = speed
        tables[f"Training throughput ({args.patch}³ patches, batch 2, one thread)"] = speed

    # 1. Pretraining on the atlases, one head per dataset.
    if args.pretrained is not None:
        encoder = args.pretrained
        results["pretraining"] = {"reused": str(encoder)}
        say(f"reusing the pretrained encoder in {encoder}")
    else:
        encoder = work / "pretrained"
        atlases = atlas_samples(args.spacing)
        say("atlases preprocessed")
        pre_config = TrainConfig(
            **schedule(args, args.pretrain_steps),
            lr=args.lr,
            pos_fraction=0.9,  # centred in the brain, not the empty field of view around it
        )
        t0, c0 = time.perf_counter(), cpu_seconds()
        model, pre_result = pretrain(
            {name: ([], classes) for name, (_, classes) in atlases.items()},
            pre_config,
            samples={name: samples for name, (samples, _) in atlases.items()},
            output=encoder,
        )
        pre_seconds, pre_cpu = time.perf_counter() - t0, cpu_seconds() - c0
        say(f"pretrained {pre_result.global_step} steps in {pre_seconds / 60:.1f} min")
        from septet.med3d.inference import evaluate_samples

        pre_rows = []
        for name, (samples, classes) in atlases.items():
            scores = evaluate_samples(
                model,
                samples,
                TrainConfig(patch_size=patch, overlap=0.25),
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
        del model, atlases
        results["pretraining"] = {
            "rows": pre_rows,
            "seconds": pre_seconds,
            "cpu_seconds": pre_cpu,
            "history": pre_result.history,
        }
        tables["Pretraining heads (Dice on the training atlas, foreground classes)"] = pre_rows
        write()

    # 2. Leave-one-volume-out fine-tuning, scratch vs pretrained.
    cases = lesion_cases(args.pyradiomics, args.spacing)
    say(f"{len(cases)} lesion volumes preprocessed")
    wanted = [f for f in args.folds.split(",") if f]
    common = dict(**schedule(args, args.finetune_steps), pos_fraction=args.pos_fraction)
    arms = {
        "scratch": (None, TrainConfig(**common, lr=args.lr)),
        "pretrained": (
            encoder,
            TrainConfig(
                **common,
                lr=args.lr / args.head_lr_multiplier,
                head_lr_multiplier=args.head_lr_multiplier,
            ),
        ),
    }
    rows = []
    results["leave_one_volume_out"] = rows
    # Learnable folds first (a same-kind volume among the training four), so a run stopped
    # early has scored the folds that can say something.
    order = sorted(cases, key=lambda c: sum(o["kind"] == c["kind"] for o in cases) < 2)
    for held_out in order:
        if wanted and held_out["case"] not in wanted:
            continue
        train_samples = [c["sample"] for c in cases if c is not held_out]
        same_kind = [
            c["case"] for c in cases if c is not held_out and c["kind"] == held_out["kind"]
        ]
        row = {
            "held_out": held_out["case"],
            "modality": held_out["modality"],
            "same_kind_in_training": ",".join(same_kind) or "none",
            "lesion_voxels": held_out["lesion_voxels"],
            f"lesion_voxels_{args.spacing:g}mm": held_out["lesion_voxels_resampled"],
        }
        for arm, (source, config) in arms.items():
            c0 = cpu_seconds()
            fitted, result, seconds = fine_tune(source, train_samples, config, args.seed)
            scores = score(fitted, held_out, args.patch, args.overlap)
            for key, value in scores.items():
                row[f"{key}_{arm}"] = value
            row[f"final_loss_{arm}"] = result.history[-1]["loss"]
            row[f"train_seconds_{arm}"] = seconds
            row[f"cpu_seconds_{arm}"] = cpu_seconds() - c0
            say(
                f"{held_out['case']} {arm}: dice {scores['dice']:.3f} (own grid "
                f"{scores['dice_original_grid']:.3f}, {scores['predicted_voxels']} voxels "
                f"predicted, {seconds:.0f} s training)"
            )
            del fitted
        rows.append(row)
        summarise(results, tables, rows)
        write(notes(args, results, done=False))

    # 3. Optional fit check: train on all five, score each of them (none held out). Whether
    # the network learns the lesions it sees, at the same budget, tells a failure to
    # generalise from one same-kind volume apart from a failure to learn at all.
    if args.fit_check:
        fit_rows: list[dict] = []
        results["fit_check"] = fit_rows
        tables["Fit check: trained on all five volumes, scored on each (not held out)"] = fit_rows
        for c in cases:
            fit_rows.append(
                {
                    "volume": c["case"],
                    "modality": c["modality"],
                    f"lesion_voxels_{args.spacing:g}mm": c["lesion_voxels_resampled"],
                }
            )
        for arm, (source, config) in arms.items():
            fitted, result, seconds = fine_tune(
                source, [c["sample"] for c in cases], config, args.seed
            )
            for c, row in zip(cases, fit_rows, strict=True):
                scores = score(fitted, c, args.patch, args.overlap)
                row.update(
                    {
                        f"{k}_{arm}": scores[k]
                        for k in (
                            "dice",
                            "dice_largest_component",
                            "predicted_voxels",
                            "lesion_voxels_hit",
                        )
                    }
                )
                row[f"final_loss_{arm}"] = result.history[-1]["loss"]
                say(f"fit check {c['case']} {arm}: dice {scores['dice']:.3f}")
            write(notes(args, results, done=False))

    results["partial"] = False
    write(notes(args, results, done=True))
    say(f"{results.get('verdict', 'done')}; {(time.perf_counter() - started) / 60:.1f} min")


def summarise(results: dict, tables: dict, rows: list[dict]) -> None:
    """Means over all folds and over the learnable ones (a same-kind volume in training)."""
    learnable = [r for r in rows if r["same_kind_in_training"] != "none"]
    summary = []
    for name, group in (("mean (all folds)", rows), ("mean (learnable folds)", learnable)):
        if not group:
            continue
        entry = {"held_out": name}
        for arm in ("scratch", "pretrained"):
            for key in ("dice", "dice_original_grid", "dice_largest_component"):
                entry[f"{key}_{arm}"] = float(np.mean([r[f"{key}_{arm}"] for r in group]))
        summary.append(entry)
    mean_s, mean_p = summary[0]["dice_scratch"], summary[0]["dice_pretrained"]
    wins = sum(r["dice_pretrained"] > r["dice_scratch"] for r in rows)
    results.update(
        mean_dice_scratch=mean_s,
        mean_dice_pretrained=mean_p,
        summary=summary,
        pretrained_wins=wins,
        verdict=(
            f"pretrained {'beats' if mean_p > mean_s else 'does NOT beat'} scratch on mean "
            f"Dice ({mean_p:.3f} vs {mean_s:.3f}; better on {wins} of {len(rows)} volumes)"
        ),
    )
    short = ["held_out", "modality", "same_kind_in_training", "lesion_voxels"]
    table = []
    for r in rows:
        entry = {k: r[k] for k in short}
        for arm in ("scratch", "pretrained"):
            for key in ("dice", "dice_original_grid", "hd95_mm", "predicted_voxels"):
                entry[f"{key}_{arm}"] = r[f"{key}_{arm}"]
        table.append(entry)
    tables["Leave-one-volume-out lesion Dice (ResNet-10, equal steps)"] = table
    tables["Means"] = summary


def notes(args: argparse.Namespace, results: dict, *, done: bool) -> str:
    pre = results.get("pretraining", {})
    pre_steps = args.pretrain_steps if "rows" in pre else f"reused ({pre.get('reused')})"
    state = "" if done else "\n**Partial: the run had not finished when this was written.**\n"
    return f"""{state}
## Verdict

{results.get("verdict", "no fold finished")}.

## Setup

`{results["command"]}`; wall {results.get("seconds_total", 0) / 60:.1f} min, CPU
{results.get("cpu_seconds_total", 0) / 60:.1f} min, one torch thread pinned to one core of a
2-core machine shared with other jobs (so wall time is longer than the CPU time).

- Voxels {args.spacing:g} mm isotropic; patches {args.patch}³, batch {args.batch}; ResNet-10;
  AdamW, cosine schedule.
- Pretraining: {pre_steps} steps alternating the two heads (MNI152 tissue, 3 classes;
  Colin27 AAL, 117 classes), lr {args.lr:g}, crops centred on a brain voxel 90% of the time.
- Fine-tuning: {args.finetune_steps} steps per arm and fold on the four other volumes,
  crops centred on a lesion voxel {args.pos_fraction:.0%} of the time; loss = cross-entropy +
  soft Dice on logits resized to the patch. Scratch: every layer at lr {args.lr:g}.
  Pretrained: the head at {args.lr:g}, the encoder at {args.lr / args.head_lr_multiplier:g}
  (MedicalNet's new-layer multiplier, {args.head_lr_multiplier:g}×).
- Scoring: the whole held-out volume by sliding windows of the patch size ({args.overlap:.0%}
  overlap, Gaussian blending), argmax; Dice and HD95 on the {args.spacing:g} mm grid, Dice
  also on the volume's own grid (probabilities resampled back) and with only the largest
  connected component kept. A fold is *learnable* when a volume of the same kind (brain,
  lung) is among its training volumes; breast1 is the only breast volume.

What the numbers mean, with the probes behind the design: docs/med3d.md, section Benchmark.
"""


if __name__ == "__main__":
    main()
