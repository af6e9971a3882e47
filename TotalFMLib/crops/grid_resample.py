"""Any region of the recipe's resampled grid, bit-identical to SimpleITK's whole-volume Resample.

The recipe resamples with the identity transform and the input's own origin and
direction, changing only the spacing. When the direction matrix holds only 0 and +-1
(axis-aligned scans, the usual case), ITK's continuous input index along each axis then
depends on that axis's output index alone, so the resampling is separable:

* ``GridMap.probe`` asks SimpleITK itself for those per-axis indices with three 1-D
  probe resamples (an image whose voxels hold their own index), so every floating-point
  detail -- the scan-line arithmetic, nearest-neighbour ties -- is ITK's;
* nearest neighbour is then a gather of the label map (a strided view when the picks
  are evenly spaced);
* linear is three 1-D interpolations on just the voxels asked for, in ITK's order and
  arithmetic (x, then y, then z; ``v0 + (v1 - v0) * d`` in float64, skipped where
  ``d == 0``; one cast to float32 at the end).

Voxels outside the input get the fill value, as in ITK. Any other direction gives
``probe() -> None`` and callers fall back to SimpleITK on the whole volume.
Testing/test_grid_resample.py checks bit-equality with SimpleITK on real cases.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class AxisMap:
    """One axis of the output grid (numpy order): for output index k ...

    ``nearest[k]`` input index nearest neighbour reads (-1: outside); ``base[k]``,
    ``frac[k]``: linear reads ``in[base] + (in[base + 1] - in[base]) * frac`` where
    ``frac > 0`` (else ``in[base]``); ``outside[k]``: linear gives the fill value.
    """

    nearest: np.ndarray
    base: np.ndarray
    frac: np.ndarray
    outside: np.ndarray

    @classmethod
    def from_probes(cls, nearest: np.ndarray, continuous: np.ndarray, size_in: int) -> "AxisMap":
        outside = np.isnan(continuous)
        c = np.where(outside, 0.0, continuous)
        base = np.clip(np.floor(c), 0, size_in - 1).astype(np.int64)
        frac = c - base
        frac[(frac <= 0) | (base >= size_in - 1)] = 0.0  # ITK: no interpolation there
        return cls(nearest=nearest.astype(np.int64), base=base, frac=frac, outside=outside)


def _step(index: np.ndarray):
    """A slice equal to ``index`` (evenly spaced, non-negative), else None."""
    if len(index) == 0 or index[0] < 0:
        return None
    if len(index) == 1:
        return slice(int(index[0]), int(index[0]) + 1)
    step = int(index[1] - index[0])
    if step <= 0 or not np.array_equal(index, index[0] + step * np.arange(len(index))):
        return None
    return slice(int(index[0]), int(index[-1]) + 1, step)


def _probe_axis(image_geometry, spacing, size, axis: int, linear: bool) -> np.ndarray:
    """ITK's per-axis answer for ``axis`` (ITK order x, y, z) -- see the module docstring."""
    import SimpleITK as sitk

    in_spacing, origin, direction, in_size = image_geometry
    shape_in, shape_out = [1, 1, 1], [1, 1, 1]
    shape_in[axis], shape_out[axis] = int(in_size[axis]), int(size[axis])
    values = np.arange(shape_in[axis], dtype=np.float64 if linear else np.int32)
    image = sitk.GetImageFromArray(values.reshape(shape_in[::-1]))
    image.SetSpacing(in_spacing)
    image.SetOrigin(origin)
    image.SetDirection(direction)
    out = sitk.Resample(image, shape_out, sitk.Transform(),
                        sitk.sitkLinear if linear else sitk.sitkNearestNeighbor, origin,
                        [float(s) for s in spacing], direction, float("nan") if linear else -1.0,
                        image.GetPixelID())
    return sitk.GetArrayFromImage(out).reshape(-1)


class GridMap:
    """The recipe's output grid as three ``AxisMap``s in numpy (z, y, x) order."""

    def __init__(self, axes: tuple[AxisMap, AxisMap, AxisMap]):
        self.axes = axes

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(len(a.base) for a in self.axes)

    @classmethod
    def probe(cls, spacing_in, origin, direction, shape_in, spacing, size) -> "GridMap | None":
        """Per-axis maps for resampling an input of ``shape_in`` (z, y, x) to ``spacing``
        and ``size`` (x, y, z) with the same origin and direction; None when the direction
        is not made of 0 and +-1 (the resampling is then not separable)."""
        d = np.asarray(direction, dtype=np.float64).reshape(3, 3)
        if not np.all(np.isin(d, (-1.0, 0.0, 1.0))):
            return None
        geometry = (tuple(float(s) for s in spacing_in), tuple(float(o) for o in origin),
                    tuple(float(v) for v in direction), tuple(int(n) for n in shape_in[::-1]))
        axes = []
        for axis in (2, 1, 0):  # ITK z, y, x -> numpy order
            nearest = _probe_axis(geometry, spacing, size, axis, linear=False)
            continuous = _probe_axis(geometry, spacing, size, axis, linear=True)
            axes.append(AxisMap.from_probes(nearest, continuous, geometry[3][axis]))
        return cls(tuple(axes))

    # ------------------------------------------------------------ nearest neighbour
    def nearest(self, array: np.ndarray, fill=0) -> np.ndarray:
        """``array`` resampled by nearest neighbour on the whole output grid (a strided
        view of ``array`` when every axis picks evenly spaced voxels inside it)."""
        picks = [a.nearest for a in self.axes]
        steps = [_step(p) for p in picks]
        if all(s is not None for s in steps):
            return array[tuple(steps)]
        out = array
        for axis, pick in enumerate(picks):
            out = np.take(out, np.clip(pick, 0, None), axis=axis)
        outside = [p < 0 for p in picks]
        if any(o.any() for o in outside):
            out = out.copy() if not out.flags.writeable else out
            for axis, o in enumerate(outside):
                index = [slice(None)] * 3
                index[axis] = o
                out[tuple(index)] = fill
        return out

    # ------------------------------------------------------------ linear
    def linear_view(self, array: np.ndarray) -> np.ndarray | None:
        """``linear(array)`` on the whole grid as a view of a float32 ``array`` (not to be written),
        when it only picks voxels (nothing interpolated or filled, even steps); else None.
        Regions of it then cost nothing (e.g. 1 mm slices resampled to 3 mm)."""
        if np.asarray(array).dtype != np.float32:
            return None
        if any(a.outside.any() or (a.frac > 0).any() or _step(a.base) is None for a in self.axes):
            return None
        return self.linear(array, copy=False)

    def linear(self, array: np.ndarray, region: tuple[slice, slice, slice] | None = None,
               fill: float = -1000.0, copy: bool = True) -> np.ndarray:
        """float32 ``array`` resampled linearly on ``region`` of the output grid
        (whole grid if None); equal bit for bit to that part of SimpleITK's output.
        ``copy=False`` may return a read-only view of ``array`` (when no voxel needs
        interpolating or filling, e.g. the recipe keeps the grid and picks every 3rd slice)."""
        if region is None:
            region = tuple(slice(0, n) for n in self.shape)
        parts = []  # per numpy axis: (base, frac, outside) inside the region
        for axis_map, r in zip(self.axes, region):
            parts.append((axis_map.base[r], axis_map.frac[r], axis_map.outside[r]))
        # read only the input voxels the region needs: interpolating along one axis is
        # independent of which voxels are kept along the others (and so is the cast to
        # float32, done on those voxels only)
        data = np.asarray(array)
        reads = []
        for axis, (base, frac, _) in enumerate(parts):
            needed = np.unique(np.concatenate([base, base[frac > 0] + 1]))
            data = _select(data, axis, needed)
            reads.append((np.searchsorted(needed, base), np.searchsorted(needed, base + 1), frac))
        data = np.asarray(data, dtype=np.float32)
        active = [bool((frac > 0).any()) for _, frac, _ in parts]
        for axis in (2, 1, 0):  # ITK interpolates x first, then y, then z
            lower, upper, frac = reads[axis]
            later_active = any(active[a] for a in range(axis))
            data = _interpolate_axis(data, axis, lower, upper, frac, keep_float64=later_active)
        if not copy and not any(outside.any() for _, _, outside in parts):
            return data.astype(np.float32, copy=False)
        out = np.array(data, dtype=np.float32, copy=None, order="C")
        if np.shares_memory(out, array):
            out = out.copy()
        for axis, (_, _, outside) in enumerate(parts):
            if outside.any():
                index = [slice(None)] * 3
                index[axis] = outside
                out[tuple(index)] = fill
        return out


def _select(data: np.ndarray, axis: int, index: np.ndarray) -> np.ndarray:
    """``data`` at ``index`` along ``axis``: a view when evenly spaced, else a copy."""
    step = _step(index)
    if step is not None:
        where = [slice(None)] * data.ndim
        where[axis] = step
        return data[tuple(where)]
    return np.take(data, index, axis=axis)


# weights this close to 0 or 1 are the rounding noise of an integer spacing ratio
_NOISE = 2.0 ** -40


def _interpolate_axis(data: np.ndarray, axis: int, lower: np.ndarray, upper: np.ndarray, frac: np.ndarray,
                      keep_float64: bool) -> np.ndarray:
    """One axis of ITK's linear interpolation: ``v0 + (v1 - v0) * frac`` in float64 where
    ``frac > 0``, ``v0`` elsewhere (``v0``, ``v1``: ``data`` at ``lower``, ``upper``).
    The result stays float64 when a later axis still interpolates (ITK keeps double
    until the end), else it is cast to float32 here."""
    active = frac > 0
    if not active.any():
        return _select(data, axis, lower)
    out = np.take(data, lower, axis=axis)
    if keep_float64:
        out = out.astype(np.float64, copy=False)
    elif data.dtype == np.float32:
        # an integer spacing ratio leaves weights of ~1e-15 or 1 - 1e-15 (ITK's rounding)
        near1 = active & (1.0 - frac <= _NOISE)
        noise = active & ((frac <= _NOISE) | near1)
        if noise.any():
            _noise_rows(data, out, axis, lower, upper, frac, noise, near1)
            active &= ~noise
    rows = np.flatnonzero(active)
    if len(rows):
        _lerp_rows(data, out, axis, lower[rows], upper[rows], frac[rows], rows)
    return out


def _where(axis: int, rows, ndim: int = 3) -> tuple:
    where = [slice(None)] * ndim
    where[axis] = rows
    return tuple(where)


def _lerp_rows(data, out, axis, lower, upper, frac, rows) -> None:
    """``out`` at ``rows`` along ``axis`` = ``v0 + (v1 - v0) * frac`` computed in float64."""
    shape = [1] * data.ndim
    shape[axis] = len(rows)
    v0 = np.take(data, lower, axis=axis).astype(np.float64, copy=False)
    v1 = np.take(data, upper, axis=axis).astype(np.float64)
    v1 -= v0
    v1 *= frac.reshape(shape)
    v1 += v0
    out[_where(axis, rows, data.ndim)] = v1  # one cast to out's dtype, as ITK's


def _noise_rows(data, out, axis, lower, upper, frac, noise, near1) -> None:
    """Rows whose weight is within 2^-40 of 0 (or 1): float32(v0 + (v1 - v0) * frac) is
    v0 (or v1) itself unless |v0| (|v1|) is tiny next to the data's range R: with
    |v1 - v0| <= R the double result lies within R * (w + 2^-50) of it, which is less
    than half a float32 step whenever |v| > 2^27 * R * (w + 2^-50) (w: the distance of
    the weight from 0 or 1). Only the voxels below that bound are computed in float64."""
    rows = np.flatnonzero(noise)
    up = np.flatnonzero(near1)
    if len(up):
        out[_where(axis, up, data.ndim)] = np.take(data, upper[up], axis=axis)
    spread = float(data.max()) - float(data.min()) if data.size else 0.0
    distance = np.where(near1[rows], 1.0 - frac[rows], frac[rows])
    shape = [1] * data.ndim
    shape[axis] = len(rows)
    bound = (2.0 ** 27 * spread * (distance + 2.0 ** -50)).astype(np.float32).reshape(shape)
    slab = out[_where(axis, rows, data.ndim)]
    small = np.nonzero((slab <= bound) & (slab >= -bound))
    if not len(small[0]):
        return
    row = rows[small[axis]]
    at0 = list(small)
    at0[axis] = lower[row]
    at1 = list(small)
    at1[axis] = upper[row]
    v0 = data[tuple(at0)].astype(np.float64)
    v1 = data[tuple(at1)].astype(np.float64)
    exact = v0 + (v1 - v0) * frac[row]
    target = list(small)
    target[axis] = row
    out[tuple(target)] = exact
