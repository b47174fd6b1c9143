"""Dict transforms: each does one thing to image and label alike, reproducibly."""

import nibabel as nib
import numpy as np
import pytest

from septet.errors import ConfigError, InputError
from septet.med3d.transforms import (
    Compose,
    LoadVolumed,
    NormalizeIntensityd,
    Orientationd,
    RandCropByLabeld,
    RandFlipd,
    RandIntensityJitterd,
    RandRotated,
    Spacingd,
    WindowIntensityd,
    augmentation,
    preprocessing,
    rng_for,
)


def sample(shape=(12, 10, 8), seed=0):
    rng = np.random.default_rng(seed)
    label = np.zeros(shape, np.int64)
    label[5:8, 4:6, 3:5] = 1
    image = (rng.normal(size=shape) + 3 * label).astype(np.float32)[None]
    return {"image": image, "label": label, "affine": np.eye(4), "meta": {}}


def test_zscore_uses_only_the_foreground():
    image = np.zeros((1, 4, 4, 4), np.float32)
    image[0, :2] = [[[1, 2, 3, 4]]]  # foreground: values 1..4, background stays 0
    out = NormalizeIntensityd()({"image": image})["image"]
    foreground = out[0, :2]
    assert foreground.mean() == pytest.approx(0, abs=1e-6)
    assert foreground.std() == pytest.approx(1, abs=1e-5)
    assert np.all(out[0, 2:] == 0)
    everything = NormalizeIntensityd(foreground_only=False)({"image": image})["image"]
    assert everything.mean() == pytest.approx(0, abs=1e-6)


def test_ct_window_clips_and_scales():
    image = np.array([-2000, -1000, -600, 150, 3000], np.float32).reshape(1, 5, 1, 1)
    out = WindowIntensityd(center=-600, width=1500)({"image": image})["image"].ravel()
    assert out == pytest.approx([0, (-1000 + 1350) / 1500, 0.5, 1, 1])
    with pytest.raises(ConfigError):
        WindowIntensityd(0, 0)


def test_crop_around_the_label_contains_it():
    data = sample()
    crop = RandCropByLabeld((4, 4, 4), pos_fraction=1.0)
    for seed in range(20):
        out = crop(data, np.random.default_rng(seed))
        assert out["image"].shape == (1, 4, 4, 4) and out["label"].shape == (4, 4, 4)
        assert out["label"].sum() > 0
        # The patch's affine places its first voxel where it was in the whole volume.
        start = np.rint(out["affine"][:3, 3]).astype(int)
        window = tuple(slice(s, s + 4) for s in start)
        assert np.array_equal(out["label"], data["label"][window])


def test_crop_pads_a_small_volume():
    out = RandCropByLabeld((16, 16, 16))(sample(), np.random.default_rng(0))
    assert out["image"].shape == (1, 16, 16, 16) and out["label"].sum() == 12


def test_flip_and_rotation_move_image_and_label_together():
    data = sample()
    flipped = RandFlipd(prob=1.0)(data, np.random.default_rng(0))
    assert np.array_equal(flipped["label"], data["label"][::-1, ::-1, ::-1])
    assert np.array_equal(flipped["image"][0], data["image"][0, ::-1, ::-1, ::-1])
    clean = {**data, "image": 3.0 * data["label"][None].astype(np.float32)}
    rotated = RandRotated(max_degrees=10, prob=1.0)(clean, np.random.default_rng(0))
    assert rotated["image"].shape == data["image"].shape
    assert set(np.unique(rotated["label"])) <= {0, 1}  # nearest: no new label values
    bright = rotated["image"][0] > 1.5
    assert bright.sum() > 0
    assert (rotated["label"][bright] == 1).mean() > 0.8  # the lesion moved with its label


def test_jitter_changes_scale_and_offset_per_channel():
    data = sample()
    out = RandIntensityJitterd(scale=0.2, shift=0.2, prob=1.0)(data, np.random.default_rng(3))
    ratio = np.polyfit(data["image"].ravel(), out["image"].ravel(), 1)[0]
    assert ratio != pytest.approx(1.0) and 0.8 <= ratio <= 1.2


def test_same_generator_state_gives_the_same_sample():
    pipeline = augmentation((6, 6, 6))
    a = pipeline(sample(), rng_for(7, 2, 5))
    b = pipeline(sample(), rng_for(7, 2, 5))
    c = pipeline(sample(), rng_for(7, 2, 6))
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["label"], b["label"])
    assert not np.array_equal(a["image"], c["image"])


def test_load_orient_resample_from_files(tmp_path):
    affine = np.diag([-1.0, 2.0, 4.0, 1.0])  # x runs right-to-left: not canonical
    image = np.random.default_rng(0).normal(size=(8, 6, 3)).astype(np.float32)
    label = np.zeros((8, 6, 3), np.uint8)
    label[2:5, 1:4, 1] = 1
    nib.Nifti1Image(image, affine).to_filename(tmp_path / "t1.nii.gz")
    nib.Nifti1Image(image * 2, affine).to_filename(tmp_path / "t2.nii.gz")
    nib.Nifti1Image(label, affine).to_filename(tmp_path / "label.nii.gz")
    pipeline = Compose([LoadVolumed(), Orientationd(), Spacingd((1.0, 1.0, 1.0))])
    out = pipeline(
        {
            "image": [str(tmp_path / "t1.nii.gz"), str(tmp_path / "t2.nii.gz")],
            "label": str(tmp_path / "label.nii.gz"),
        }
    )
    assert out["image"].shape == (2, 8, 12, 12)  # two modalities as channels, 1 mm voxels
    assert out["label"].shape == (8, 12, 12)
    assert np.allclose(np.diag(out["affine"])[:3], 1.0)
    assert out["label"].sum() == 9 * 2 * 4  # 9 voxels, each now 1 × 2 × 4 voxels
    assert np.allclose(out["meta"]["affine"], affine)
    assert out["meta"]["pre_spacing_shape"] == (8, 6, 3)


def test_mismatched_grids_are_refused(tmp_path):
    nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)).to_filename(tmp_path / "a.nii")
    nib.Nifti1Image(np.zeros((4, 4, 5), np.uint8), np.eye(4)).to_filename(tmp_path / "b.nii")
    with pytest.raises(InputError, match="share one grid"):
        preprocessing()({"image": str(tmp_path / "a.nii"), "label": str(tmp_path / "b.nii")})
