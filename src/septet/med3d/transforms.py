"""Composable transforms over dicts of arrays (MONAI's idea, written small).

A sample is a dict: ``image`` (C, X, Y, Z) float32, ``label`` (X, Y, Z) integers, ``affine``
(4×4, voxel -> RAS mm, for the current grid) and ``meta`` (where it came from and how to undo
the geometry: the original affine, header, shape and orientation). Each transform takes the
dict and a ``numpy.random.Generator`` and returns a new dict; the deterministic ones ignore the
generator. Passing the same generator state gives the same sample, which is what lets a
resumed training run draw exactly the patches the uninterrupted run would have drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from septet.errors import ConfigError, InputError
from septet.med3d.volume_io import Volume, read_volume, resample_to_spacing, to_canonical

Sample = dict[str, Any]


class Transform:
    """One step of a pipeline: ``transform(sample, rng) -> sample``."""

    keys: tuple[str, ...] = ()

    def __call__(self, data: Sample, rng: np.random.Generator | None = None) -> Sample:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in vars(self).items())})"


def _keys(keys: str | Sequence[str]) -> tuple[str, ...]:
    return (keys,) if isinstance(keys, str) else tuple(keys)


def _spatial(array: np.ndarray, key: str) -> tuple[int, int, int]:
    """The (X, Y, Z) shape of an image (C, X, Y, Z) or label (X, Y, Z)."""
    return tuple(array.shape[1:4]) if key == "image" else tuple(array.shape[:3])


class Compose(Transform):
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, data: Sample, rng: np.random.Generator | None = None) -> Sample:
        rng = rng if rng is not None else np.random.default_rng()
        for transform in self.transforms:
            data = transform(data, rng)
        return data


class LoadVolumed(Transform):
    """Read ``image`` (a path, a Volume, or a list of them for several modalities, stacked
    as channels) and ``label`` into arrays; remember the image's affine and header."""

    def __init__(self, keys: str | Sequence[str] = ("image", "label")):
        self.keys = _keys(keys)

    def __call__(self, data: Sample, rng: np.random.Generator | None = None) -> Sample:
        out = dict(data)
        if "image" in self.keys and "image" in data:
            sources = data["image"] if isinstance(data["image"], list | tuple) else [data["image"]]
            volumes = [s if isinstance(s, Volume) else read_volume(s) for s in sources]
            channels = []
            for volume in volumes:
                array = np.asarray(volume.data, dtype=np.float32)
                channels += [array] if array.ndim == 3 else list(np.moveaxis(array, -1, 0))
            shapes = {c.shape for c in channels}
            if len(shapes) != 1:
                raise InputError(
                    f"the modalities of one case have different grids {sorted(shapes)}; "
                    "resample them to one grid first"
                )
            first = volumes[0]
            out["image"] = np.stack(channels)
            out["affine"] = first.affine.copy()
            out["meta"] = {
                **data.get("meta", {}),
                "source": first.source,
                "format": first.meta.get("format", ""),
                "affine": first.affine.copy(),
                "header": first.header,
                "shape": tuple(channels[0].shape),
            }
        if "label" in self.keys and data.get("label") is not None:
            source = data["label"]
            volume = source if isinstance(source, Volume) else read_volume(source)
            label = np.asarray(volume.data)
            if label.ndim != 3:
                raise InputError(f"label {volume.source} must be 3-D, got shape {label.shape}")
            if "image" in out and label.shape != _spatial(out["image"], "image"):
                raise InputError(
                    f"label {volume.source} has shape {label.shape} but its image has "
                    f"{_spatial(out['image'], 'image')}; they must share one grid"
                )
            out["label"] = np.rint(label).astype(np.int64)
        return out


class Orientationd(Transform):
    """Turn the arrays to the canonical RAS+ frame (axis flips and swaps only)."""

    def __init__(self, keys: str | Sequence[str] = ("image", "label")):
        self.keys = _keys(keys)

    def __call__(self, data: Sample, rng: np.random.Generator | None = None) -> Sample:
        out = dict(data)
        affine = data["affine"]
        new_affine = affine
        for key in self.keys:
            if data.get(key) is None:
                continue
            array = data[key]
            if key == "image":
                moved, new_affine, ornt = to_canonical(np.moveaxis(array, 0, -1), affine)
                out[key] = np.ascontiguousarray(np.moveaxis(moved, -1, 0))
            else:
                out[key], new_affine, ornt = to_canonical(array, affine)
            out["meta"] = {**out.get("meta", {}), "ornt": ornt}
        out["affine"] = new_affine
        return out


class Spacingd(Transform):
    """Resample to ``spacing`` mm: linear for the image, nearest for the label."""

    def __init__(self, spacing: Sequence[float], keys: str | Sequence[str] = ("image", "label")):
        self.spacing = tuple(float(s) for s in spacing)
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ConfigError(f"spacing {spacing!r} must be three positive numbers (mm)")
        self.keys = _keys(keys)

    def __call__(self, data: Sample, rng: np.random.Generator | None = None) -> Sample:
        out = dict(data)
        affine = data["affine"]
        new_affine = affine
        shape = None
        out["meta"] = {**data.get("meta", {}), "pre_spacing_shape": None}
        for key in self.keys:
            if data.get(key) is None:
                continue
            array = data[key]
            out["meta"]["pre_spacing_shape"] = _spatial(array, key)
            if key == "image":
                moved, new_affine = resample_to_spacing(
                    np.moveaxis(array, 0, -1), affine, self.spacing, order=1, shape=shape
                )
                out[key] = np.ascontiguousarray(np.moveaxis(moved, -1, 0), dtype=np.float32)
            else:
                out[key], new_affine = resample_to_spacing(
                    array, affine, self.spacing, order=0, shape=shape
                )
            shape = _spatial(out[key], key)  # every key lands on exactly the same grid
        out["affine"] = new_affine
        return out


class NormalizeIntensityd(Transform):
    """Z-score each channel over its foreground (voxels above ``background``; MedicalNet uses
    > 0), and set the background to 0; ``foreground_only=False`` uses every voxel."""

    def __init__(
        self,
        keys: str | Sequence[str] = ("image",),
        *,
        foreground_only: bool = True,
        background: float = 0.0,
    ):
        self.keys = _keys(keys)
        self.foreground_only = foreground_only
        self.background = background

    def __call__(self, data: Sample, rng: np.random.Generator | None = None) -> Sample:
        out = dict(data)
        for key in self.keys:
            image = np.asarray(data[key], dtype=np.float32)
            result = np.zeros_like(image)
            for c, channel in enumerate(image):
                mask = (
                    channel > self.background
                    if self.foreground_only
                    else np.ones_like(channel, dtype=bool)
                )
                if not mask.any():
                    continue
                values = channel[mask]
                std = float(values.std())
                result[c][mask] = (values - values.mean()) / (std if std > 1e-8 else 1.0)
            out[key] = result
        return out


class WindowIntensityd(Transform):
    """CT windowing: clip to ``center ± width/2`` (Hounsfield units) and scale to [0, 1]."""

    def __init__(self, center: float, width: float, keys: str | Sequence[str] = ("image",)):
        if width <= 0:
            raise ConfigError(f"window width {width} must be positive")
        self.center, self.width, self.keys = float(center), float(width), _keys(keys)

    def __call__(self, data: Sample, rng: np.random.Generator | None = None) -> Sample:
        out = dict(data)
        low = self.center - self.width / 2
        for key in self.keys:
            image = np.asarray(data[key], dtype=np.float32)
            out[key] = (np.clip(image, low, low + self.width) - low) / self.width
        return out


class SpatialPadd(Transform):
    """Pad (centred) so each spatial side is at least ``size``; images with their minimum."""

    def __init__(self, size: Sequence[int], keys: str | Sequence[str] = ("image", "label")):
        self.size = tuple(int(s) for s in size)
        self.keys = _keys(keys)

    def __call__(self, data: Sample, rng: np.random.Generator | None = None) -> Sample:
        return pad_to(data, self.size, self.keys)


def pad_to(data: Sample, size: Sequence[int], keys: Sequence[str]) -> Sample:
    out = dict(data)
    for key in keys:
        if data.get(key) is None:
            continue
        array = data[key]
        shape = _spatial(array, key)
        pads = [
            (max(0, s - n) // 2, max(0, s - n) - max(0, s - n) // 2)
            for n, s in zip(shape, size, strict=True)
        ]
        if not any(a or b for a, b in pads):
            continue
        if key == "image":
            fill = [float(c.min()) for c in array]
            out[key] = np.stack(
                [np.pad(c, pads, constant_values=f) for c, f in zip(array, fill, strict=True)]
            )
        else:
            out[key] = np.pad(array, pads, constant_values=0)
        if key in ("image", "label") and "affine" in out:
            shift = np.array([p[0] for p in pads], dtype=np.float64)
            affine = out["affine"].copy()
            affine[:3, 3] -= affine[:3, :3] @ shift
            out["pad_affine"] = affine
    if "pad_affine" in out:
        out["affine"] = out.pop("pad_affine")
    return out


class RandCropByLabeld(Transform):
    """Cut a ``size`` patch, centred on a random foreground voxel with probability
    ``pos_fraction`` (on any voxel otherwise), so small lesions are seen often."""

    def __init__(
        self,
        size: Sequence[int],
        pos_fraction: float = 0.67,
        keys: str | Sequence[str] = ("image", "label"),
    ):
        self.size = tuple(int(s) for s in size)
        if not 0.0 <= pos_fraction <= 1.0:
            raise ConfigError(f"pos_fraction {pos_fraction} must be within [0, 1]")
        self.pos_fraction = pos_fraction
        self.keys = _keys(keys)

    def __call__(self, data: Sample, rng: np.random.Generator | None = None) -> Sample:
        rng = rng if rng is not None else np.random.default_rng()
        data = pad_to(data, self.size, self.keys)
        shape = _spatial(data["image"], "image")
        label = data.get("label")
        centre = None
        if label is not None and rng.random() < self.pos_fraction:
            foreground = np.flatnonzero(label > 0)
            if foreground.size:
                centre = np.unravel_index(foreground[rng.integers(foreground.size)], shape)
        if centre is None:
            centre = tuple(int(rng.integers(n)) for n in shape)
        start = [
            int(min(max(c - s // 2, 0), n - s))
            for c, s, n in zip(centre, self.size, shape, strict=True)
        ]
        window = tuple(slice(a, a + s) for a, s in zip(start, self.size, strict=True))
        out = dict(data)
        for key in self.keys:
            if data.get(key) is None:
                continue
            out[key] = np.ascontiguousarray(
                data[key][(slice(None), *window)] if key == "image" else data[key][window]
            )
        if "affine" in data:
            affine = data["affine"].copy()
            affine[:3, 3] += affine[:3, :3] @ np.asarray(start, dtype=np.float64)
            out["affine"] = affine
        return out


class RandFlipd(Transform):
    """Flip each spatial axis in ``axes`` with probability ``prob``."""

    def __init__(
        self,
        prob: float = 0.5,
        axes: Sequence[int] = (0, 1, 2),
        keys: str | Sequence[str] = ("image", "label"),
    ):
        self.prob, self.axes, self.keys = prob, tuple(axes), _keys(keys)

    def __call__(self, data: Sample, rng: np.random.Generator | None = None) -> Sample:
        rng = rng if rng is not None else np.random.default_rng()
        flips = [a for a in self.axes if rng.random() < self.prob]
        out = dict(data)
        for key in self.keys:
            if data.get(key) is None or not flips:
                continue
            offset = 1 if key == "image" else 0
            out[key] = np.ascontiguousarray(np.flip(data[key], [a + offset for a in flips]))
        return out


class RandRotated(Transform):
    """Rotate by up to ``max_degrees`` in one random plane with probability ``prob``
    (linear for the image, nearest for the label, same size)."""

    def __init__(
        self,
        max_degrees: float = 10.0,
        prob: float = 0.3,
        keys: str | Sequence[str] = ("image", "label"),
    ):
        self.max_degrees, self.prob, self.keys = float(max_degrees), prob, _keys(keys)

    def __call__(self, data: Sample, rng: np.random.Generator | None = None) -> Sample:
        from scipy import ndimage

        rng = rng if rng is not None else np.random.default_rng()
        if rng.random() >= self.prob:
            return data
        angle = float(rng.uniform(-self.max_degrees, self.max_degrees))
        plane = [(0, 1), (0, 2), (1, 2)][int(rng.integers(3))]
        out = dict(data)
        for key in self.keys:
            if data.get(key) is None:
                continue
            if key == "image":
                out[key] = np.stack(
                    [
                        ndimage.rotate(c, angle, axes=plane, reshape=False, order=1, mode="nearest")
                        for c in data[key]
                    ]
                ).astype(np.float32)
            else:
                out[key] = ndimage.rotate(
                    data[key], angle, axes=plane, reshape=False, order=0, mode="constant", cval=0
                )
        return out


class RandIntensityJitterd(Transform):
    """With probability ``prob``, scale intensities by 1 ± ``scale`` and shift by ± ``shift``
    (in units of the channel's standard deviation), per channel."""

    def __init__(
        self,
        scale: float = 0.1,
        shift: float = 0.1,
        prob: float = 0.5,
        keys: str | Sequence[str] = ("image",),
    ):
        self.scale, self.shift, self.prob, self.keys = scale, shift, prob, _keys(keys)

    def __call__(self, data: Sample, rng: np.random.Generator | None = None) -> Sample:
        rng = rng if rng is not None else np.random.default_rng()
        if rng.random() >= self.prob:
            return data
        out = dict(data)
        for key in self.keys:
            image = np.asarray(data[key], dtype=np.float32)
            factors = 1.0 + rng.uniform(-self.scale, self.scale, size=(image.shape[0], 1, 1, 1))
            shifts = rng.uniform(-self.shift, self.shift, size=(image.shape[0], 1, 1, 1))
            std = image.reshape(image.shape[0], -1).std(axis=1).reshape(-1, 1, 1, 1)
            out[key] = (image * factors + shifts * std).astype(np.float32)
        return out


def preprocessing(
    spacing: Sequence[float] | None = None,
    *,
    ct_window: tuple[float, float] | None = None,
    with_label: bool = True,
) -> Compose:
    """The deterministic front of every pipeline: load, canonical orientation, resample to
    ``spacing`` mm, then CT windowing (``(center, width)`` in HU) or foreground z-score."""
    keys = ("image", "label") if with_label else ("image",)
    steps: list[Transform] = [LoadVolumed(keys), Orientationd(keys)]
    if spacing is not None:
        steps.append(Spacingd(spacing, keys))
    steps.append(WindowIntensityd(*ct_window) if ct_window is not None else NormalizeIntensityd())
    return Compose(steps)


def augmentation(
    patch_size: Sequence[int],
    *,
    pos_fraction: float = 0.67,
    flip: bool = True,
    rotate_degrees: float = 10.0,
    jitter: float = 0.1,
) -> Compose:
    """The random back of a training pipeline: crop around the label, flips, a small
    rotation, intensity jitter."""
    steps: list[Transform] = [RandCropByLabeld(patch_size, pos_fraction)]
    if flip:
        steps.append(RandFlipd())
    if rotate_degrees > 0:
        steps.append(RandRotated(rotate_degrees))
    if jitter > 0:
        steps.append(RandIntensityJitterd(jitter, jitter))
    return Compose(steps)


def rng_for(seed: int, *stream: int) -> np.random.Generator:
    """A generator fixed by ``seed`` and a position (epoch, step, …): the same position
    always draws the same numbers, whatever happened before."""
    return np.random.default_rng([seed % 2**63, *(s % 2**63 for s in stream)])
