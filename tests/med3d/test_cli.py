"""`septet med3d ...`: predict writes a mask on the input's grid; errors are one line, exit 2."""

import json

import nibabel as nib
import numpy as np
import pytest

from septet.cli import main
from septet.med3d import create_model, save_model
from septet.med3d.training import model_extra


def run(capsys, *argv):
    with pytest.raises(SystemExit) as exit_info:
        main(list(argv))
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


@pytest.fixture
def model_dir(tmp_path):
    from septet.med3d.config import TrainConfig

    config = TrainConfig(patch_size=(16, 16, 16), spacing=(2.0, 2.0, 2.0))
    return save_model(
        create_model("resnet10", num_classes=2).eval(), tmp_path / "model", **model_extra(config)
    )


@pytest.fixture
def scan(tmp_path):
    # Oblique-free but flipped and anisotropic, so prediction must undo orientation and spacing.
    affine = np.array([[-1.2, 0, 0, 50], [0, 0, 0.9, -30], [0, 2.5, 0, 12], [0, 0, 0, 1.0]])
    image = nib.Nifti1Image(
        np.random.default_rng(0).normal(size=(20, 9, 17)).astype(np.float32), affine
    )
    image.header["descrip"] = b"test scan"
    path = tmp_path / "scan.nii.gz"
    image.to_filename(path)
    label = nib.Nifti1Image((np.asarray(image.dataobj) > 1).astype(np.uint8), affine)
    label.to_filename(tmp_path / "label.nii.gz")
    return path


def test_predict_writes_a_mask_with_the_inputs_affine_and_header(capsys, tmp_path, model_dir, scan):
    code, _out, err = run(
        capsys,
        "med3d",
        "predict",
        str(model_dir),
        str(scan),
        "--out",
        str(tmp_path / "mask.nii.gz"),
    )
    assert code == 0, err
    mask = nib.load(tmp_path / "mask.nii.gz")
    reference = nib.load(scan)
    assert mask.shape == reference.shape
    assert np.allclose(mask.affine, reference.affine)
    assert mask.header["descrip"] == reference.header["descrip"]
    assert set(np.unique(np.asarray(mask.dataobj))) <= {0, 1}


def test_largest_component_leaves_one_connected_lesion(capsys, tmp_path, scan):
    import torch
    from scipy import ndimage

    from septet.med3d.config import TrainConfig

    # An untrained ResNet-10 seeded 0 predicts two separate blobs on this noise scan.
    torch.manual_seed(0)
    config = TrainConfig(patch_size=(16, 16, 16), spacing=(2.0, 2.0, 2.0))
    model = create_model("resnet10", num_classes=2).eval()
    model_dir = save_model(model, tmp_path / "seeded", **model_extra(config))
    masks = {}
    for flag in ((), ("--largest-component",)):
        out = tmp_path / f"mask{len(flag)}.nii.gz"
        code, _out, err = run(
            capsys, "med3d", "predict", str(model_dir), str(scan), "--out", str(out), *flag
        )
        assert code == 0, err
        masks[bool(flag)] = np.asarray(nib.load(out).dataobj) > 0
    _, raw_components = ndimage.label(masks[False], structure=np.ones((3, 3, 3)))
    _, kept_components = ndimage.label(masks[True], structure=np.ones((3, 3, 3)))
    assert raw_components >= 2 and kept_components == 1
    assert not (masks[True] & ~masks[False]).any()  # only removes, never adds
    (tmp_path / "val.txt").write_text("scan.nii.gz label.nii.gz\n")
    code, out, err = run(
        capsys, "med3d", "eval", str(model_dir), str(tmp_path / "val.txt"), "--largest-component"
    )
    assert code == 0, err
    assert out.startswith("scan: dice ")


def test_eval_reports_dice_and_hd95_per_case(capsys, tmp_path, model_dir, scan):
    (tmp_path / "val.txt").write_text("scan.nii.gz label.nii.gz\n")
    code, out, err = run(
        capsys, "med3d", "eval", str(model_dir), str(tmp_path / "val.txt"), "--json"
    )
    assert code == 0, err
    row = json.loads(out.splitlines()[0])
    assert row["case"] == "scan" and len(row["dice"]) == 1 and len(row["hd95_mm"]) == 1


def test_models_lists_medicalnet_sizes(capsys):
    code, out, _ = run(capsys, "med3d", "models")
    assert code == 0
    assert "resnet50   46,155k encoder parameters" in out


def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, model_dir):
    (tmp_path / "notes.txt").write_text("hello")
    code, _out, err = run(
        capsys,
        "med3d",
        "predict",
        str(model_dir),
        str(tmp_path / "notes.txt"),
        "--out",
        str(tmp_path / "m.nii.gz"),
    )
    assert code == 2
    assert err.startswith("error: ") and "NIfTI" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, "med3d", "weights", str(tmp_path / "missing.pth"))
    assert code == 2 and "does not exist" in err


def test_class_index_list_file_trains_a_classifier(capsys, tmp_path):
    # MedicalNet-style list file whose second field is a class index.
    from septet.med3d.phantoms import make_phantom

    lines = []
    for seed in range(4):
        image, _ = make_phantom((16, 16, 16), seed=seed, num_lesions=seed % 2)
        nib.Nifti1Image(image, np.eye(4)).to_filename(tmp_path / f"v{seed}.nii.gz")
        lines.append(f"v{seed}.nii.gz {seed % 2}")
    (tmp_path / "classes.txt").write_text("\n".join(lines) + "\n")
    code, out, err = run(
        capsys,
        "med3d",
        "train",
        str(tmp_path / "classes.txt"),
        "--out",
        str(tmp_path / "clf"),
        "--num-classes",
        "2",
        "--patch",
        "16",
        "--epochs",
        "1",
        "--steps",
        "2",
        "--batch-size",
        "2",
    )
    assert code == 0, err
    assert json.loads((tmp_path / "clf" / "config.json").read_text())["task"] == "classification"
    code, out, err = run(
        capsys, "med3d", "predict", str(tmp_path / "clf"), str(tmp_path / "v1.nii.gz")
    )
    assert code == 0, err
    answer = json.loads(out)
    assert answer["class"] in (0, 1) and sum(answer["probabilities"]) == pytest.approx(1, abs=1e-3)
    code, out, err = run(
        capsys, "med3d", "eval", str(tmp_path / "clf"), str(tmp_path / "classes.txt")
    )
    assert code == 0, err
    assert out.strip().splitlines()[-1].startswith("accuracy ")
