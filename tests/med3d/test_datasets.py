"""Where cases come from: MedicalNet list files, folder conventions, the pyradiomics archive."""

import nibabel as nib
import numpy as np
import pytest

from septet.errors import InputError, NotFoundError
from septet.med3d.datasets import find_cases, load_cases, read_list_file, write_list_file


def write(path, shape=(4, 4, 4)):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.Nifti1Image(np.zeros(shape, np.float32), np.eye(4)).to_filename(path)
    return path


def test_medicalnet_list_file(tmp_path):
    # MedicalNet's data/train.txt: "<image> <label>" relative to --data_root.
    root = tmp_path / "data"
    write(root / "MRBrainS18/images/070.nii.gz")
    write(root / "MRBrainS18/labels/070.nii.gz")
    write(root / "MRBrainS18/images/075.nii.gz")
    listing = tmp_path / "train.txt"
    listing.write_text(
        "# MRBrainS18\n"
        "MRBrainS18/images/070.nii.gz MRBrainS18/labels/070.nii.gz\n"
        "\n"
        "MRBrainS18/images/075.nii.gz 3\n"
    )
    records = read_list_file(listing, data_root=root)
    assert records[0] == {
        "case": "070",
        "image": str(root / "MRBrainS18/images/070.nii.gz"),
        "label": str(root / "MRBrainS18/labels/070.nii.gz"),
    }
    assert records[1]["class"] == 3 and "label" not in records[1]
    # Written back next to the data, it reads the same.
    again = read_list_file(write_list_file(records, root / "copy.txt"))
    assert again == records


def test_list_file_errors_name_the_line(tmp_path):
    listing = tmp_path / "train.txt"
    listing.write_text("missing.nii.gz missing_label.nii.gz\n")
    with pytest.raises(NotFoundError, match=r"train.txt:1: image"):
        read_list_file(listing)
    write(tmp_path / "a.nii.gz")
    listing.write_text("a.nii.gz b.nii.gz c.nii.gz\n")
    with pytest.raises(InputError, match=r"train\.txt:1: expected"):
        read_list_file(listing)


def test_folder_conventions(tmp_path):
    write(tmp_path / "msd/imagesTr/case_001_0000.nii.gz")
    write(tmp_path / "msd/labelsTr/case_001.nii.gz")
    write(tmp_path / "msd/imagesTr/case_002_0000.nii.gz")
    records = find_cases(tmp_path / "msd")
    assert [r["case"] for r in records] == ["case_001", "case_002"]
    assert records[0]["label"].endswith("labelsTr/case_001.nii.gz") and "label" not in records[1]

    write(tmp_path / "flat/brain1_image.nii.gz")
    write(tmp_path / "flat/brain1_label.nii.gz")
    records = load_cases(tmp_path / "flat")
    assert records == [
        {
            "case": "brain1",
            "image": str(tmp_path / "flat/brain1_image.nii.gz"),
            "label": str(tmp_path / "flat/brain1_label.nii.gz"),
        }
    ]
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no cases"):
        find_cases(tmp_path / "empty")
