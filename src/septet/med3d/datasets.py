"""Where cases come from: MedicalNet's list files, a folder convention, and the pyradiomics
source archive. Each returns records ``{"case", "image", "label"}`` (label a path, a Volume,
or for classification an integer under ``"class"``), ready for the transforms."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from septet.errors import InputError, NotFoundError
from septet.med3d.volume_io import (
    VOLUME_SUFFIXES,
    case_name,
    read_pyradiomics_archive,
    volume_suffix,
)

IMAGE_FOLDERS = ("images", "imagesTr")
LABEL_FOLDERS = {"images": "labels", "imagesTr": "labelsTr"}


def read_list_file(
    path: str | os.PathLike[str], data_root: str | os.PathLike[str] | None = None
) -> list[dict[str, Any]]:
    """MedicalNet's dataset list: one case per line, ``<image> <label>`` separated by
    whitespace, paths relative to ``data_root`` (default: the list file's folder). A second
    field that is an integer is a class index (classification); a line with only an image
    is an unlabelled case. Blank lines and ``#`` comments are skipped."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"list file {str(path)!r} does not exist")
    root = Path(data_root) if data_root is not None else path.parent
    records = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) > 2:
            raise InputError(
                f"{path}:{number}: expected '<image> <label>', got {len(fields)} fields; "
                "paths with spaces are not supported by the list format"
            )
        image = root / fields[0]
        if not image.exists():
            raise NotFoundError(f"{path}:{number}: image {str(image)!r} does not exist")
        record: dict[str, Any] = {"case": case_name(image), "image": str(image)}
        if len(fields) == 2:
            if fields[1].lstrip("-").isdigit():
                record["class"] = int(fields[1])
            else:
                label = root / fields[1]
                if not label.exists():
                    raise NotFoundError(f"{path}:{number}: label {str(label)!r} does not exist")
                record["label"] = str(label)
        records.append(record)
    if not records:
        raise InputError(f"list file {path} names no cases")
    return records


def write_list_file(records: list[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Write records as a MedicalNet list file, paths relative to the file's folder."""
    from septet.common.atomic import atomic_write_text

    path = Path(path)
    lines = []
    for record in records:
        fields = [os.path.relpath(record["image"], path.parent)]
        if "label" in record:
            fields.append(os.path.relpath(record["label"], path.parent))
        elif "class" in record:
            fields.append(str(record["class"]))
        lines.append(" ".join(fields))
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def find_cases(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Cases in a folder, by either convention:

    * ``images/`` (or ``imagesTr/``) beside ``labels/`` (or ``labelsTr/``), matched by file
      name (a ``_0000`` modality suffix on images is allowed, as in nnU-Net);
    * one flat folder of ``<case>_image.<ext>`` and ``<case>_label.<ext>`` (pyradiomics).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NotFoundError(f"dataset folder {str(folder)!r} does not exist")
    for image_dir in IMAGE_FOLDERS:
        if (folder / image_dir).is_dir():
            return _paired_folders(folder / image_dir, folder / LABEL_FOLDERS[image_dir])
    records = []
    for path in sorted(folder.iterdir()):
        name = case_name(path)
        if volume_suffix(path) and name.endswith("_image"):
            case = name[: -len("_image")]
            labels = [p for p in folder.glob(f"{case}_label.*") if volume_suffix(p)]
            record = {"case": case, "image": str(path)}
            if labels:
                record["label"] = str(labels[0])
            records.append(record)
    if not records:
        raise InputError(
            f"{folder} holds no cases: expected images/ + labels/ folders or "
            f"<case>_image / <case>_label files ({', '.join(VOLUME_SUFFIXES)})"
        )
    return records


def _paired_folders(images: Path, labels: Path) -> list[dict[str, Any]]:
    label_files = {case_name(p): p for p in labels.iterdir()} if labels.is_dir() else {}
    records = []
    for path in sorted(images.iterdir()):
        if not volume_suffix(path):
            continue
        case = case_name(path)
        base = case[:-5] if case[-5:-4] == "_" and case[-4:].isdigit() else case
        record: dict[str, Any] = {"case": base, "image": str(path)}
        label = label_files.get(case) or label_files.get(base)
        if label is not None:
            record["label"] = str(label)
        records.append(record)
    if not records:
        raise InputError(f"{images} holds no volumes ({', '.join(VOLUME_SUFFIXES)})")
    return records


def pyradiomics_cases(archive: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The labelled volumes of the pyradiomics source archive (``pyradiomics-*.tar.gz``),
    read straight from the archive, as records."""
    return [
        {"case": case, "image": image, "label": label}
        for case, (image, label) in read_pyradiomics_archive(archive).items()
    ]


def load_cases(
    source: str | os.PathLike[str], data_root: str | None = None
) -> list[dict[str, Any]]:
    """Records from a list file (.txt), a pyradiomics archive (.tar.gz/.tgz/.tar) or a folder."""
    path = Path(source)
    name = path.name.lower()
    if path.is_dir():
        return find_cases(path)
    if name.endswith((".tar.gz", ".tgz", ".tar")):
        return pyradiomics_cases(path)
    if path.exists():
        return read_list_file(path, data_root)
    raise NotFoundError(
        f"{source!r} does not exist; pass a list file, a dataset folder or the pyradiomics archive"
    )
