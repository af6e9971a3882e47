"""Array and geometry helpers shared by the benchmark's lesion insertions and whole-case
augmentation: checked copies, random draws, boxes and distance maps in (Z, Y, X) order."""
from __future__ import annotations

import numpy as np
from scipy import ndimage

from ..errors import InputError

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def start_arrays(ct: np.ndarray, labels: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Checked float32 and int16 copies of a CT and its label map, and the (z, y, x) spacing."""
    ct = np.asarray(ct)
    labels = np.asarray(labels)
    if ct.ndim != 3 or ct.shape != labels.shape:
        raise InputError(None, f"CT {ct.shape} and label map {labels.shape} must be 3-D arrays of one shape")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise InputError(None, f"spacing must be three positive numbers (x, y, z mm), got {spacing}")
    zyx = np.asarray(spacing, dtype=float)[::-1].copy()
    return ct.astype(np.float32, copy=True), labels.astype(np.int16, copy=True), zyx


def uniform(rng: np.random.Generator, value) -> float:
    """A number, or a draw from a (low, high) range."""
    if isinstance(value, (tuple, list)):
        return float(rng.uniform(value[0], value[1]))
    return float(value)


def mask_box(mask: np.ndarray, pad: int | np.ndarray = 0) -> tuple[slice, slice, slice]:
    sl = ndimage.find_objects(mask.astype(np.uint8))[0]
    pad = np.broadcast_to(np.asarray(pad, dtype=int), (3,))
    return tuple(slice(max(0, s.start - p), min(n, s.stop + p)) for s, p, n in zip(sl, pad, mask.shape))


def around(center, half_extent_vox, shape) -> tuple[slice, slice, slice]:
    return tuple(slice(max(0, int(c - h)), min(n, int(c + h) + 1))
                 for c, h, n in zip(center, half_extent_vox, shape))


def smooth_noise(shape, rng: np.random.Generator, sigma_vox) -> np.ndarray:
    """Zero-mean, unit-std Gaussian-smoothed noise (float32)."""
    field_ = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_vox, mode="wrap")
    std = float(field_.std())
    return field_ / std if std > 0 else field_


def offsets_mm(box, zyx, center) -> list[np.ndarray]:
    """Per-axis distances (mm) from ``center`` (voxel index) for the voxels of ``box``, broadcastable."""
    out = []
    for axis, (s, sp, c) in enumerate(zip(box, zyx, center)):
        shape = [1, 1, 1]
        shape[axis] = s.stop - s.start
        out.append(((np.arange(s.start, s.stop) - c) * sp).reshape(shape).astype(np.float32))
    return out


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def posterior_mm(shape, zyx, direction) -> np.ndarray:
    """(Z, Y, X) map of each voxel's LPS y coordinate (mm, relative): larger = more posterior."""
    d = np.asarray(direction if direction is not None else IDENTITY, dtype=float).reshape(3, 3)
    z, y, x = (np.arange(n, dtype=np.float32) * sp for n, sp in zip(shape, zyx))
    return (d[1, 0] * x[None, None, :] + d[1, 1] * y[None, :, None] + d[1, 2] * z[:, None, None]).astype(np.float32)


def ball_weights(box, zyx, center, radius_mm: float) -> np.ndarray:
    """Partial-volume weight of a ball: 1 inside, 0 outside, linear over one voxel at the edge."""
    dz, dy, dx = offsets_mm(box, zyx, center)
    dist = np.sqrt(dz ** 2 + dy ** 2 + dx ** 2)
    edge = float(np.mean(zyx))
    return np.clip((radius_mm - dist) / edge + 0.5, 0.0, 1.0)
