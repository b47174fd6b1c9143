"""Reading and writing volumes; geometry (orientation, spacing) keeps every voxel in place."""

import io
import tarfile

import nibabel as nib
import nrrd
import numpy as np
import pytest

from septet.errors import InputError, NotFoundError
from septet.med3d.volume_io import (
    from_canonical,
    read_pyradiomics_archive,
    read_volume,
    resample_to_spacing,
    to_canonical,
    write_nifti,
)

LPS_HEADER = {
    "space": "left-posterior-superior",
    "space directions": np.diag([0.5, 0.75, 3.0]),
    "space origin": np.array([10.0, 20.0, -30.0]),
}


def world(affine, index):
    return (affine @ np.array([*index, 1.0]))[:3]


def test_nifti_mask_keeps_the_affine_and_header(tmp_path):
    affine = np.array([[0, 0, -2.5, 90], [0.9, 0, 0, -120], [0, 1.1, 0, 40], [0, 0, 0, 1.0]])
    scan = nib.Nifti1Image(
        np.random.default_rng(0).normal(size=(6, 7, 8)).astype(np.float32), affine
    )
    scan.header["descrip"] = b"scanner X"
    scan.set_qform(affine, 1)
    scan.set_sform(affine, 2)
    scan.to_filename(tmp_path / "scan.nii.gz")
    reference = read_volume(tmp_path / "scan.nii.gz")
    mask = (np.arange(6 * 7 * 8).reshape(6, 7, 8) % 3).astype(np.uint8)
    write_nifti(mask, tmp_path / "mask.nii.gz", reference.affine, reference.header)

    written = nib.load(tmp_path / "mask.nii.gz")
    assert np.allclose(written.affine, affine)
    assert written.header["descrip"].tobytes().rstrip(b"\0") == b"scanner X"
    assert int(written.header["qform_code"]) == 1 and int(written.header["sform_code"]) == 2
    assert written.get_data_dtype() == np.uint8
    assert np.array_equal(np.asarray(written.dataobj), mask)


def test_nrrd_lps_is_read_as_ras(tmp_path):
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    nrrd.write(str(tmp_path / "v.nrrd"), data, LPS_HEADER)
    volume = read_volume(tmp_path / "v.nrrd")
    assert np.array_equal(volume.data, data)
    # LPS (10, 20, -30) is RAS (-10, -20, -30); axis x points left, i.e. -x in RAS.
    assert np.allclose(world(volume.affine, (0, 0, 0)), [-10, -20, -30])
    assert np.allclose(world(volume.affine, (1, 1, 1)), [-10.5, -20.75, -27])
    assert volume.spacing == pytest.approx((0.5, 0.75, 3.0))


def test_canonical_orientation_keeps_world_positions_and_undoes_exactly():
    data = np.random.default_rng(1).normal(size=(4, 5, 6))
    affine = np.array([[0, 0, -2.0, 10], [-1.0, 0, 0, 5], [0, 3.0, 0, -7], [0, 0, 0, 1]])
    canonical, new_affine, ornt = to_canonical(data, affine)
    assert canonical.shape == (6, 4, 5)  # R from axis 2, A from axis 0, S from axis 1
    assert np.all(np.diag(new_affine)[:3] > 0)  # RAS+: every axis points the positive way
    for index in [(0, 0, 0), (3, 1, 5), (1, 4, 2)]:
        value = data[index]
        position = world(affine, index)
        new_index = np.rint(np.linalg.solve(new_affine, [*position, 1])[:3]).astype(int)
        assert canonical[tuple(new_index)] == value
    assert np.array_equal(from_canonical(canonical, ornt), data)


def test_resampling_keeps_the_field_of_view():
    data = np.zeros((10, 10, 4), np.float32)
    data[4:6, 4:6, 1:3] = 1
    affine = np.diag([1.0, 1.0, 5.0, 1.0])
    out, new_affine = resample_to_spacing(data, affine, (2.0, 2.0, 2.5), order=1)
    assert out.shape == (5, 5, 8)
    assert np.sqrt((new_affine[:3, :3] ** 2).sum(0)) == pytest.approx([2, 2, 2.5])
    # The outer voxel edges stay where they were: first edge at -0.5 voxel of the old grid.
    assert world(new_affine, (-0.5, -0.5, -0.5)) == pytest.approx(world(affine, (-0.5, -0.5, -0.5)))
    labels, _ = resample_to_spacing(data.astype(np.int64) * 3, affine, (2.0, 2.0, 2.5), order=0)
    assert set(np.unique(labels)) == {0, 3}  # nearest neighbour invents no label
    with pytest.raises(InputError, match="positive"):
        resample_to_spacing(data, affine, (0, 1, 1), order=1)


def test_pyradiomics_archive_is_read_without_unpacking(tmp_path):
    archive = tmp_path / "pyradiomics-3.1.0.tar.gz"
    rng = np.random.default_rng(2)
    with tarfile.open(archive, "w:gz") as tar:
        for case in ("brain1", "lung1"):
            image = rng.integers(0, 100, size=(5, 6, 7)).astype(np.int16)
            label = (image > 50).astype(np.uint8)
            for role, array in (("image", image), ("label", label)):
                buffer = io.BytesIO()
                nrrd.write(buffer, array, LPS_HEADER)
                blob = buffer.getvalue()
                info = tarfile.TarInfo(f"pyradiomics-3.0.1a1/data/{case}_{role}.nrrd")
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
        info = tarfile.TarInfo("pyradiomics-3.0.1a1/data/lonely_image.nrrd")  # no label
        info.size = 0
        tar.addfile(info, io.BytesIO(b""))
    pairs = read_pyradiomics_archive(archive)
    assert sorted(pairs) == ["brain1", "lung1"]
    image, label = pairs["lung1"]
    assert image.data.shape == label.data.shape == (5, 6, 7)
    assert np.allclose(image.affine, label.affine)
    assert np.array_equal(label.data, (image.data > 50).astype(np.uint8))


def test_unreadable_inputs_say_what_to_do(tmp_path):
    with pytest.raises(NotFoundError, match="does not exist"):
        read_volume(tmp_path / "missing.nii.gz")
    (tmp_path / "scan.png").write_bytes(b"png")
    with pytest.raises(InputError, match=r"NIfTI \(.nii, .nii.gz\) or NRRD"):
        read_volume(tmp_path / "scan.png")
    (tmp_path / "broken.nii.gz").write_bytes(b"not nifti")
    with pytest.raises(InputError, match="not a readable NIfTI"):
        read_volume(tmp_path / "broken.nii.gz")
