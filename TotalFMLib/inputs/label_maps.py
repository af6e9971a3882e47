"""Label-map plumbing shared by the segmentation readers: integer values, voxel counts per
label, and the CT's voxel grid (the same grid, or the same voxels stored in another axis
order, which is reordered without resampling; anything else is refused).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .image_files import short_list
from .volume import Volume


def volume_name(vol: Volume, what: str) -> str:
    """The volume's file name for messages, or "<what in memory>"."""
    return vol.source or f"<{what} in memory>"


def _fmt(values) -> str:
    return "(" + ", ".join(f"{float(v):.6g}" for v in values) + ")"


def grid_differences(seg: Volume, ct: Volume, tol: float = 1e-3) -> list[str]:
    """What differs between the two grids (shape, spacing, origin, direction), for messages."""
    text = {
        "shape": lambda: f"shape (Z,Y,X) {seg.shape} vs CT {ct.shape}",
        "spacing": lambda: f"spacing {_fmt(seg.spacing)} vs CT {_fmt(ct.spacing)} mm",
        "origin": lambda: f"origin {_fmt(seg.origin)} vs CT {_fmt(ct.origin)} mm",
        "direction": lambda: f"direction {_fmt(seg.direction)} vs CT {_fmt(ct.direction)}",
    }
    return [text[name]() for name in seg.grid_differences(ct, tol)]


def _mismatch(seg: Volume, ct: Volume, differences: list[str], hint: str = "") -> InputError:
    return InputError(volume_name(seg, "segmentation"), (
        f"segmentation grid does not match the CT {Path(volume_name(ct, 'CT')).name}: "
        + "; ".join(differences) + hint))


def check_same_grid(seg: Volume, ct: Volume) -> None:
    """InputError naming what differs (shape, spacing, origin, direction) unless the
    segmentation is on the CT's grid (within ``grid_differences``' tolerance)."""
    differences = grid_differences(seg, ct)
    if differences:
        raise _mismatch(seg, ct, differences)


def _reordered_onto(seg: Volume, ct: Volume) -> np.ndarray | None:
    """seg's array in the CT's axis order when both grids hold the same voxel centres
    (axes permuted and/or flipped), else None."""
    m_seg = np.reshape(seg.direction, (3, 3)) * np.asarray(seg.spacing)  # columns: index steps
    m_ct = np.reshape(ct.direction, (3, 3)) * np.asarray(ct.spacing)
    try:
        steps = np.linalg.solve(m_ct, m_seg)  # seg index step -> CT index step, (x,y,z)
        offset = np.linalg.solve(m_ct, np.subtract(seg.origin, ct.origin))
    except np.linalg.LinAlgError:
        return None
    perm = np.rint(steps)
    if (np.abs(steps - perm).max() > 1e-3 or not (np.abs(perm).sum(0) == 1).all()
            or not (np.abs(perm).sum(1) == 1).all() or np.abs(offset - np.rint(offset)).max() > 1e-2):
        return None
    xyz = seg.array.transpose(2, 1, 0)
    src_axis = [int(np.flatnonzero(perm[i])[0]) for i in range(3)]
    xyz = xyz.transpose(src_axis)
    start = np.rint(offset).astype(int)
    for i, j in enumerate(src_axis):
        if perm[i, j] < 0:
            xyz = np.flip(xyz, axis=i)
            start[i] -= seg.array.shape[2 - j] - 1
    if start.any() or xyz.shape[::-1] != ct.shape:
        return None
    return np.ascontiguousarray(xyz.transpose(2, 1, 0))


def onto_ct_grid(seg: Volume, ct: Volume) -> Volume:
    """The segmentation on exactly the CT's grid, or InputError naming what differs."""
    differences = grid_differences(seg, ct)
    if not differences:
        array = seg.array
    else:
        array = _reordered_onto(seg, ct)
        if array is None:
            raise _mismatch(seg, ct, differences, "; expected the label map made from this CT")
        seg.meta["note"] = "axes reordered/flipped onto the CT grid (same voxels, other storage order)"
    return Volume(array, tuple(ct.spacing), tuple(ct.origin), tuple(ct.direction),
                  source=seg.source, meta=dict(seg.meta))


def integer_array(where: str, a: np.ndarray, what: str) -> np.ndarray:
    """``a`` as integers (floats holding whole numbers are converted), else InputError."""
    if np.issubdtype(a.dtype, np.integer) or a.dtype == bool:
        return a
    if not np.issubdtype(a.dtype, np.floating):
        raise InputError(where, f"holds {a.dtype} values; expected an integer {what}")
    finite = np.isfinite(a)
    fractional = a[finite & (a != np.rint(np.where(finite, a, 0)))]
    if not finite.all() or fractional.size:
        example = short_list(np.unique(fractional)[:3].round(4)) if fractional.size else "NaN"
        raise InputError(where, f"holds non-integer values (e.g. {example}); expected an integer "
                                f"{what} (a probability map or a CT image?)")
    return a.astype(np.int64)


def label_counts(a: np.ndarray) -> dict[int, int]:
    """{label value: voxel count} of an integer array, 0 included."""
    if a.size and a.min() >= 0 and a.max() < 1 << 20:
        counts = np.bincount(a.reshape(-1).astype(np.int64, copy=False))
        ids = np.flatnonzero(counts)
        return {int(i): int(counts[i]) for i in ids}
    ids, counts = np.unique(a, return_counts=True)
    return {int(i): int(c) for i, c in zip(ids, counts)}
