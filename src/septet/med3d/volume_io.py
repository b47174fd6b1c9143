"""Reading and writing volumes: NIfTI through nibabel, NRRD through pynrrd, the pyradiomics
source archive, and the geometry helpers (canonical orientation, spacing) that keep every
voxel tied to its place in the patient.

Every volume is held as ``Volume(data, affine)``: ``data`` is (X, Y, Z) or (X, Y, Z, C), and
``affine`` maps voxel indices to RAS+ millimetres (NIfTI's convention). NRRD's LPS space is
converted to RAS on reading.
"""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from septet.common.atomic import atomic_write_bytes
from septet.errors import InputError, NotFoundError

NIFTI_SUFFIXES = (".nii", ".nii.gz")
NRRD_SUFFIXES = (".nrrd", ".nhdr")
VOLUME_SUFFIXES = NIFTI_SUFFIXES + NRRD_SUFFIXES
# NRRD space names -> the sign flips that turn their axes into RAS
_NRRD_SPACES = {
    "right-anterior-superior": (1, 1, 1),
    "ras": (1, 1, 1),
    "left-posterior-superior": (-1, -1, 1),
    "lps": (-1, -1, 1),
    "left-anterior-superior": (-1, 1, 1),
    "las": (-1, 1, 1),
}


@dataclass
class Volume:
    """A 3-D (or 3-D × channels) array and the affine from voxel indices to RAS+ mm."""

    data: np.ndarray
    affine: np.ndarray
    header: Any = None  # the NIfTI header when read from NIfTI (kept for writing masks)
    source: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each array axis."""
        return tuple(float(s) for s in np.sqrt((self.affine[:3, :3] ** 2).sum(axis=0)))


def volume_suffix(path: str | os.PathLike[str]) -> str:
    """The volume suffix of ``path`` ('.nii.gz', '.nii', '.nrrd', '.nhdr') or ''."""
    name = str(path).lower()
    return next((s for s in sorted(VOLUME_SUFFIXES, key=len, reverse=True) if name.endswith(s)), "")


def case_name(path: str | os.PathLike[str]) -> str:
    """A file's name without its volume suffix."""
    name = Path(path).name
    suffix = volume_suffix(name)
    return name[: len(name) - len(suffix)] if suffix else Path(name).stem


def read_volume(path: str | os.PathLike[str]) -> Volume:
    """Read a NIfTI (.nii, .nii.gz) or NRRD (.nrrd, .nhdr) volume."""
    path = Path(path)
    if not path.exists():
        raise NotFoundError(f"volume {str(path)!r} does not exist")
    suffix = volume_suffix(path)
    if suffix in NIFTI_SUFFIXES:
        import nibabel as nib

        try:
            image = nib.load(str(path))
            data = np.asanyarray(image.dataobj)
        except Exception as error:
            raise InputError(f"{path} is not a readable NIfTI file: {error}") from error
        volume = Volume(
            _check_dims(data, path),
            np.asarray(image.affine, dtype=np.float64),
            image.header,
            str(path),
        )
        volume.meta["format"] = "nifti"
        return volume
    if suffix in NRRD_SUFFIXES:
        import nrrd

        try:
            data, header = nrrd.read(str(path))
        except Exception as error:
            raise InputError(f"{path} is not a readable NRRD file: {error}") from error
        return nrrd_volume(data, header, str(path))
    raise InputError(
        f"{path} is not a volume septet can read; use NIfTI (.nii, .nii.gz) or NRRD (.nrrd, .nhdr)"
    )


def _check_dims(data: np.ndarray, path: Any) -> np.ndarray:
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim not in (3, 4):
        raise InputError(
            f"{path} has {data.ndim} dimensions {data.shape}; expected a 3-D volume "
            "(or 3-D with channels last)"
        )
    return data


def nrrd_affine(header: dict[str, Any]) -> np.ndarray:
    """The RAS voxel-to-mm affine of an NRRD header (``space directions`` + ``space origin``)."""
    affine = np.eye(4)
    directions = header.get("space directions")
    if directions is not None:
        rows = [np.asarray(d, dtype=np.float64) for d in directions]
        spatial = [r for r in rows if r is not None and np.all(np.isfinite(r)) and r.size == 3]
        if len(spatial) != 3:
            raise InputError(f"NRRD space directions {directions!r} do not describe 3 axes")
        affine[:3, :3] = np.stack(spatial, axis=1)
    elif header.get("spacings") is not None:
        affine[:3, :3] = np.diag(np.asarray(header["spacings"], dtype=np.float64)[:3])
    origin = header.get("space origin")
    if origin is not None:
        affine[:3, 3] = np.asarray(origin, dtype=np.float64)
    space = str(header.get("space", "right-anterior-superior")).lower()
    if space not in _NRRD_SPACES:
        raise InputError(
            f"NRRD space {header.get('space')!r} is not supported; use one of "
            f"{', '.join(sorted(_NRRD_SPACES))}"
        )
    return np.diag([*_NRRD_SPACES[space], 1.0]) @ affine


def nrrd_volume(data: np.ndarray, header: dict[str, Any], source: str) -> Volume:
    volume = Volume(_check_dims(data, source), nrrd_affine(header), None, source)
    volume.meta["format"] = "nrrd"
    return volume


def read_nrrd_bytes(blob: bytes, source: str) -> Volume:
    """Read an NRRD file (attached data) from memory, e.g. out of a tar archive."""
    import nrrd

    handle = io.BytesIO(blob)
    try:
        header = nrrd.read_header(handle)
        data = nrrd.read_data(header, handle, None)
    except Exception as error:
        raise InputError(f"{source} is not a readable NRRD file: {error}") from error
    return nrrd_volume(data, header, source)


def read_pyradiomics_archive(archive: str | os.PathLike[str]) -> dict[str, tuple[Volume, Volume]]:
    """The image/label pairs of the pyradiomics source archive (``pyradiomics-*.tar.gz``):
    every ``data/<case>_image.nrrd`` that has a ``data/<case>_label.nrrd``, by case name."""
    path = Path(archive)
    if not path.exists():
        raise NotFoundError(f"archive {str(path)!r} does not exist")
    try:
        tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by the `with tar` below
    except tarfile.TarError as error:
        raise InputError(f"{path} is not a readable tar archive: {error}") from error
    found: dict[str, dict[str, tarfile.TarInfo]] = {}
    with tar:
        for member in tar.getmembers():
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 2 or parts[-2] != "data":
                continue
            stem = case_name(parts[-1])
            for role in ("image", "label"):
                if stem.endswith(f"_{role}") and volume_suffix(parts[-1]) in NRRD_SUFFIXES:
                    found.setdefault(stem[: -len(role) - 1], {})[role] = member
        pairs = {}
        for case in sorted(found):
            members = found[case]
            if set(members) != {"image", "label"}:
                continue
            image, label = (
                read_nrrd_bytes(tar.extractfile(members[r]).read(), f"{path}:{members[r].name}")
                for r in ("image", "label")
            )
            pairs[case] = (image, label)
    if not pairs:
        raise InputError(
            f"{path} holds no data/<case>_image.nrrd with a matching _label.nrrd; "
            "is it the pyradiomics source archive?"
        )
    return pairs


def write_nifti(
    data: np.ndarray,
    path: str | os.PathLike[str],
    affine: np.ndarray,
    header: Any = None,
    dtype: Any = np.uint8,
) -> Path:
    """Write ``data`` as NIfTI (gzip if the name ends .gz) atomically, with ``affine`` and a
    copy of ``header`` (its data type and scaling set for ``dtype``)."""
    import nibabel as nib

    path = Path(path)
    if volume_suffix(path) not in NIFTI_SUFFIXES:
        raise InputError(f"{path} must end in .nii or .nii.gz to be written as NIfTI")
    data = np.asarray(data).astype(dtype)
    header = header.copy() if header is not None else None
    image = nib.Nifti1Image(data, affine, header=header)
    image.set_data_dtype(dtype)
    image.header.set_slope_inter(1.0, 0.0)  # masks are stored as is, never rescaled
    if header is not None:
        # Keep the reference's qform/sform codes: the mask sits where the scan sits.
        image.set_qform(affine, int(header["qform_code"]))
        image.set_sform(affine, int(header["sform_code"]))
    blob = image.to_bytes()
    if str(path).lower().endswith(".gz"):
        blob = gzip.compress(blob, compresslevel=6, mtime=0)
    atomic_write_bytes(path, blob)
    return path


# --- geometry ------------------------------------------------------------------------------

CANONICAL = np.array([[0, 1], [1, 1], [2, 1]], dtype=float)  # RAS+


def to_canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reorder and flip the first three axes to RAS+ (no interpolation); returns the data,
    its new affine and the orientation needed to undo it with ``from_canonical``."""
    from nibabel import orientations as ornt_mod

    ornt = ornt_mod.io_orientation(affine)
    transform = ornt_mod.ornt_transform(ornt, CANONICAL)
    spatial = data.shape[:3]
    moved = ornt_mod.apply_orientation(data, transform)
    new_affine = affine @ ornt_mod.inv_ornt_aff(transform, spatial)
    return np.ascontiguousarray(moved), new_affine, ornt


def from_canonical(data: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Put RAS+ data back in the axis order and directions given by ``ornt``."""
    from nibabel import orientations as ornt_mod

    return np.ascontiguousarray(
        ornt_mod.apply_orientation(data, ornt_mod.ornt_transform(CANONICAL, ornt))
    )


def resample_to_spacing(
    data: np.ndarray,
    affine: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    order: int,
    shape: tuple[int, int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Resample the first three axes to ``spacing`` mm (or exactly to ``shape``), keeping the
    field of view: voxel edges stay at the same place in the patient. ``order`` 1 (linear)
    for images, 0 (nearest) for labels. Returns the data and its new affine."""
    from scipy import ndimage

    old_shape = np.asarray(data.shape[:3], dtype=np.float64)
    current = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    if shape is None:
        if len(spacing) != 3 or min(spacing) <= 0:
            raise InputError(f"spacing {spacing!r} must be three positive numbers (mm)")
        shape = tuple(
            int(max(1, round(n * s / t)))
            for n, s, t in zip(old_shape, current, spacing, strict=True)
        )
    factor = np.asarray(shape, dtype=np.float64) / old_shape  # new voxels per old voxel
    if np.allclose(factor, 1.0):
        return data, affine
    step = 1.0 / factor  # old voxels per new voxel
    zoom = tuple(factor) + (1.0,) * (data.ndim - 3)
    if order == 0:
        # Nearest neighbour by index, so labels keep their exact values and no label is invented.
        index = [
            np.minimum(((np.arange(n) + 0.5) * s).astype(np.int64), int(o) - 1)
            for n, s, o in zip(shape, step, old_shape, strict=True)
        ]
        out = data[np.ix_(*index)]
    else:
        out = ndimage.zoom(
            data.astype(np.float32, copy=False), zoom, order=order, mode="nearest", grid_mode=True
        )
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, :3] * step
    new_affine[:3, 3] = affine[:3, :3] @ (0.5 * step - 0.5) + affine[:3, 3]
    return out, new_affine
