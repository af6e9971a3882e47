"""Organ crops: CT (HU) + TotalSegmentator label map -> (N, 3, crop, crop, frames) tensor.

The published TotalFM recipe (DESIGN.md, "Organ crop"); the released weights depend on it:

1. Resample the CT (linear, fill -1000 HU) and the label map (nearest neighbour) with
   SimpleITK to spacing ``(max(0.6, sx), max(0.6, sy), max(3.0, sz))`` mm, same origin and
   direction. New size per axis: ``max(1, round(size * spacing / new_spacing))`` with
   Python's ``round`` (halves to even). Arrays stay in SimpleITK (Z, Y, X) order.
2. Per organ, the bounding box of its voxels in the resampled label map; Z keeps the whole
   extent, Y and X follow ``crop_range`` (the 192/448 rule).
3. Three windows on the cropped HU (``window_channels``; the fast path ``_window_into``):
   lung, soft tissue, bone, from ``ct_windows.WINDOWS``.
4. Layout (3, Y, X, Z), trilinear resize (``align_corners=False``) to (crop, crop, frames).

Speed: nothing is resampled whole. ``grid_resample.GridMap`` gets ITK's own per-axis
sampling positions from three tiny 1-D SimpleITK probes; the label map on the new grid is
then a (usually strided, copy-free) pick of the original voxels, scanned once for all
organs (``scipy.ndimage.find_objects``). The CT is then handled a few Y rows at a time:
each block is interpolated (in ITK's order and float64 arithmetic, bit-identical to
SimpleITK's whole-volume ``Resample``; Testing/test_grid_resample.py), windowed, and
resized for every crop it touches while it is in the CPU cache (``crop_resize``: torch's
own kernels, level by level, bit-identical to the trilinear resize of the whole crop),
the blocks spread over the CPU threads. Oblique directions, where the sampling is not
separable, fall back to SimpleITK on the whole volume.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch

from . import catalogue
from .ct_windows import WINDOWS, window_range
from .crop_resize import column_ranges, level_by_level_exact, resize_columns, resize_rows, resize_whole
from .errors import Cancelled, InputError
from .label_maps import check_same_grid
from .volume import Volume

FILL_HU = -1000.0
MIN_SPACING = (0.6, 0.6, 3.0)  # mm, (x, y, z)


@dataclass
class OrganCrops:
    """One case's organ crops, ready for the image encoder.

    ``images[i]`` belongs to ``organs[i]`` (structure names in label order);
    ``boxes[name]`` is its (Z, Y, X) crop on the resampled grid of spacing ``spacing``
    (x, y, z mm); ``missing`` lists requested organs absent from the segmentation.
    """

    images: torch.Tensor
    organs: list[str]
    boxes: dict[str, tuple[slice, slice, slice]]
    spacing: tuple[float, float, float]
    missing: list[str] = field(default_factory=list)


def target_spacing(spacing) -> tuple[float, float, float]:
    """Resampled spacing (x, y, z): each axis at least 0.6, 0.6 and 3.0 mm."""
    return tuple(max(m, float(s)) for m, s in zip(MIN_SPACING, spacing))


def target_size(size, spacing, new_spacing) -> tuple[int, int, int]:
    """Resampled size (x, y, z): ``max(1, round(size * spacing / new_spacing))``."""
    return tuple(max(1, int(round(n * s / t))) for n, s, t in zip(size, spacing, new_spacing))


def resample_array(like: Volume, array: np.ndarray, spacing, size, linear: bool) -> Volume:
    """``array`` on ``like``'s grid, resampled to ``spacing``/``size`` (same origin, direction)."""
    import SimpleITK as sitk

    image = like.with_array(array).to_sitk()
    out = sitk.Resample(
        image, [int(n) for n in size], sitk.Transform(),
        sitk.sitkLinear if linear else sitk.sitkNearestNeighbor,
        image.GetOrigin(), [float(s) for s in spacing], image.GetDirection(),
        FILL_HU if linear else 0.0, image.GetPixelID(),
    )
    del image
    return Volume(array=sitk.GetArrayFromImage(out), spacing=tuple(out.GetSpacing()),
                  origin=tuple(out.GetOrigin()), direction=tuple(out.GetDirection()))


def _label_array(seg: Volume) -> np.ndarray:
    labels = np.asarray(seg.array)
    if labels.dtype.kind in "iu":
        return labels
    if labels.dtype.kind == "b":
        return labels.astype(np.uint8)
    if labels.dtype.kind != "f" or not np.array_equal(np.rint(labels), labels):
        raise InputError(seg.source, "segmentation holds non-integer labels")
    return labels.astype(np.int16)


def resample_case(ct: Volume, seg: Volume) -> tuple[Volume, Volume]:
    """Resample CT (linear, float32, fill -1000) and label map (nearest) to
    ``target_spacing``; both must share the CT's grid."""
    check_same_grid(seg, ct)
    return resample_to(ct, seg, target_spacing(ct.spacing))


def resample_to(ct: Volume, seg: Volume, spacing) -> tuple[Volume, Volume]:
    """CT (linear, float32, fill -1000) and label map (nearest) on the CT's grid resampled to
    ``spacing`` (x, y, z) mm, same origin and direction."""
    size = target_size(ct.shape[::-1], ct.spacing, spacing)
    new_ct = resample_array(ct, np.asarray(ct.array, dtype=np.float32), spacing, size, linear=True)
    new_seg = resample_array(ct, _label_array(seg), spacing, size, linear=False)
    new_ct.source, new_ct.meta = ct.source, dict(ct.meta)
    # the loader's voxel counts per organ describe the old grid
    new_seg.source, new_seg.meta = seg.source, {k: v for k, v in seg.meta.items() if k != "organs"}
    return new_ct, new_seg


def crop_range(lo: int, hi: int, size: int, min_box: int = 192, max_box: int = 448) -> tuple[int, int]:
    """The Y or X crop [start, stop) for an organ spanning [lo, hi) on an axis of ``size``.

    - ``size <= min_box``: the whole axis, (0, size);
    - box shorter than ``min_box``: a ``min_box`` window centred on the box, then shifted
      into the image: start = clamp((lo + hi - min_box) // 2, 0, size - min_box);
    - box longer than ``max_box``: the centred ``max_box`` window,
      start = (lo + hi - max_box) // 2 (which lies inside the box);
    - otherwise the box itself.
    ``//`` floors, so an odd leftover puts the extra voxel after the box. For even boxes
    (192, 448) this equals centre = (lo + hi) // 2, start = centre - box // 2.
    """
    if size <= min_box:
        return 0, size
    length = hi - lo
    if length < min_box:
        start = min(max((lo + hi - min_box) // 2, 0), size - min_box)
        return start, start + min_box
    if length > max_box:
        start = (lo + hi - max_box) // 2
        return start, start + max_box
    return lo, hi


def crop_box(bbox: tuple[slice, slice, slice], shape, min_box: int = 192, max_box: int = 448
             ) -> tuple[slice, slice, slice]:
    """Crop (Z, Y, X) for an organ bounding box (as ``find_objects`` gives it) in an
    image of ``shape`` (Z, Y, X): Z the box's whole extent, Y and X by ``crop_range``."""
    z, y, x = bbox
    y0, y1 = crop_range(y.start, y.stop, shape[1], min_box, max_box)
    x0, x1 = crop_range(x.start, x.stop, shape[2], min_box, max_box)
    return slice(z.start, z.stop), slice(y0, y1), slice(x0, x1)


def window_channels(hu: np.ndarray) -> np.ndarray:
    """(3, ...) float32: lung, soft-tissue and bone windows of ``hu``, each
    ``(clip(hu, floor, ceil) - floor) / (ceil - floor)`` with floor = WL - WW // 2,
    ceil = WL + WW // 2, computed in float32."""
    x = np.asarray(hu, dtype=np.float32)
    out = np.empty((len(WINDOWS),) + x.shape, dtype=np.float32)
    _window_into(x, out)
    return out


def _window_into(x: np.ndarray, out: np.ndarray) -> None:
    """``out[c]`` = window ``c`` of float32 ``x`` (the formula of ``window_channels``;
    numpy, so it runs on the calling thread without holding the GIL)."""
    for channel, (name, _, _) in zip(out, WINDOWS):
        floor, ceil = window_range(name)
        np.clip(x, np.float32(floor), np.float32(ceil), out=channel)
        np.subtract(channel, np.float32(floor), out=channel)
        np.divide(channel, np.float32(ceil - floor), out=channel)


def resize_channels(channels: np.ndarray | torch.Tensor, crop_size: int = 192, frames: int = 32) -> torch.Tensor:
    """(3, Z, Y, X) windowed crop -> (3, crop_size, crop_size, frames): layout (C, Y, X, Z),
    trilinear resize with ``align_corners=False`` (inference: no autograd)."""
    channels = torch.as_tensor(channels).permute(0, 2, 3, 1)
    out = torch.empty((channels.shape[0], crop_size, crop_size, frames), dtype=channels.dtype,
                      device=channels.device)
    resize_whole(channels, out)
    return out


def _windowed_rows(hu: np.ndarray) -> np.ndarray:
    """(3, Y, X, Z) windows of a (Z, Y, X) HU block of a few Y rows. Each row is copied out
    whole and then transposed in the cache (six times faster than one strided transpose)."""
    z, y, x = hu.shape
    row = np.empty((z, x), dtype=np.float32)
    rows = np.empty((y, x, z), dtype=np.float32)
    for r in range(y):
        np.copyto(row, hu[:, r])
        np.copyto(rows[r], row.T)
    out = np.empty((len(WINDOWS), y, x, z), dtype=np.float32)
    _window_into(rows, out)
    return out


# below this many voxels a second thread costs more than it saves
_PARALLEL_VOXELS = 1 << 22
# HU voxels windowed per block of rows (the block and its windows stay in the CPU cache)
_BLOCK_VOXELS = 1 << 18


def _in_threads(fn, chunks: list, done=None) -> list:
    """``[fn(c) for c in chunks]``, on up to ``torch.get_num_threads()`` threads that take
    the next chunk when free (numpy copies and ufuncs, scipy's label scan and small torch
    kernels release the GIL). ``done(i)`` runs on this thread once chunk ``i`` and all
    before it are done; what it raises (e.g. ``Cancelled``) drops the chunks not started."""
    workers = min(len(chunks), torch.get_num_threads())
    pool = None
    if workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(workers)
    try:
        if pool is not None:
            results = [pool.submit(fn, chunk).result for chunk in chunks]
        else:  # in order on this thread, each when its turn comes
            results = [functools.partial(fn, chunk) for chunk in chunks]
        out = []
        for i, result in enumerate(results):
            out.append(result())
            if done is not None:
                done(i)
        return out
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def labelled_box(labels: np.ndarray) -> tuple[slice, slice, slice] | None:
    """The box around all positive labels (two fast max-projections), None if there are none."""
    in_plane = labels.max(axis=0) > 0
    along = [labels.max(axis=(1, 2)) > 0, in_plane.any(axis=1), in_plane.any(axis=0)]
    if not along[0].any():
        return None
    return tuple(slice(int(np.argmax(a)), len(a) - int(np.argmax(a[::-1]))) for a in along)


def _boxes_in(labels: np.ndarray, top: int) -> list:
    """``find_objects(labels, max_label=top)``, scanning only the box that holds labels."""
    from scipy import ndimage

    box = labelled_box(labels)
    if box is None:
        return [None] * top
    found = ndimage.find_objects(labels[box], max_label=top)
    return [None if b is None else tuple(slice(s.start + o.start, s.stop + o.start) for s, o in zip(b, box))
            for b in found]


def _find_boxes(labels: np.ndarray, top: int) -> list:
    """``scipy.ndimage.find_objects(labels, max_label=top)``; big volumes are scanned in Z
    slabs on the worker threads (a few per thread, so a thread slowed by other work on the
    machine does less of it) and the slabs' boxes joined."""
    threads = torch.get_num_threads()
    if labels.size <= _PARALLEL_VOXELS or labels.shape[0] < 2 or threads < 2:
        return _boxes_in(labels, top)
    edges = np.linspace(0, labels.shape[0], min(labels.shape[0], 4 * threads) + 1).astype(int)
    slabs = _in_threads(lambda z: _boxes_in(labels[z[0]:z[1]], top), list(zip(edges[:-1], edges[1:])))
    boxes = [None] * top
    for z0, found in zip(edges[:-1], slabs):
        for i, b in enumerate(found):
            if b is None:
                continue
            b = (slice(b[0].start + z0, b[0].stop + z0),) + b[1:]
            boxes[i] = b if boxes[i] is None else tuple(
                slice(min(p.start, q.start), max(p.stop, q.stop)) for p, q in zip(boxes[i], b))
    return boxes


def crop_tensor(hu: np.ndarray, crop_size: int = 192, frames: int = 32) -> torch.Tensor:
    """(3, crop_size, crop_size, frames) float32 from an HU crop in (Z, Y, X) order."""
    return resize_channels(window_channels(hu), crop_size, frames)


def _resampler(ct: Volume, seg: Volume):
    """(label map on the recipe's grid, ``hu(region) -> float32 CT on that region``, spacing).

    Exact either way: separable grids (0/+-1 directions) read only what is asked for
    (``grid_resample``); others are resampled whole with SimpleITK.
    """
    from .grid_resample import GridMap

    check_same_grid(seg, ct)
    spacing = target_spacing(ct.spacing)
    size = target_size(ct.shape[::-1], ct.spacing, spacing)
    grid = GridMap.probe(ct.spacing, ct.origin, ct.direction, ct.shape, spacing, size)
    if grid is None:
        r_ct, r_seg = resample_case(ct, seg)
        return r_seg.array, lambda region: r_ct.array[region], tuple(float(s) for s in r_ct.spacing)
    labels = grid.nearest(_label_array(seg))
    picked = grid.linear_view(ct.array)
    if picked is not None:
        return labels, lambda region: picked[region], tuple(float(s) for s in spacing)
    return (labels, lambda region: grid.linear(ct.array, region, fill=FILL_HU, copy=False),
            tuple(float(s) for s in spacing))


def _span(slices) -> slice:
    slices = list(slices)
    return slice(min(s.start for s in slices), max(s.stop for s in slices))


def _row_blocks(crops: list[tuple[slice, slice, slice]]) -> list[tuple[int, int]]:
    """[y0, y1) blocks of Y rows covering the crops, each of about ``_BLOCK_VOXELS`` voxels
    of the crops' joint Z and X extent."""
    z, y, x = (_span(b[a] for b in crops) for a in range(3))
    rows = max(1, _BLOCK_VOXELS // max(1, (z.stop - z.start) * (x.stop - x.start)))
    return [(y0, min(y.stop, y0 + rows)) for y0 in range(y.start, y.stop, rows)]


def _check_cancel(cancel) -> None:
    if cancel is not None and cancel():
        raise Cancelled("organ cropping cancelled")


def _block_windows(crops, here, resampled_hu, block):
    """(windows (3, r, X, Z) of the block's rows over the Z and X extent of crops ``here``,
    Z start, X start)."""
    zs, xs = _span(crops[i][0] for i in here), _span(crops[i][2] for i in here)
    return _windowed_rows(resampled_hu((zs, slice(*block), xs))), zs.start, xs.start


def _in_row_blocks(crops, resampled_hu, cancel, take, finished) -> None:
    """For each block of rows (on the worker threads): window it once, then
    ``take(i, windows, rows)`` for every crop ``i`` it touches, where ``windows`` is
    (3, r, X, Z) of the crop's part and ``rows`` the part's rows relative to the crop.
    ``finished(i)`` runs on this thread once crop ``i``'s last block is done."""
    blocks = _row_blocks(crops)

    def crop_rows(block: tuple[int, int]) -> None:
        y0, y1 = block
        here = [i for i, b in enumerate(crops) if b[1].start < y1 and b[1].stop > y0]
        if not here:
            return
        windows, z0, x0 = _block_windows(crops, here, resampled_hu, block)
        for i in here:
            z, y, x = crops[i]
            a, b = max(y.start, y0), min(y.stop, y1)
            take(i, windows[:, a - y0:b - y0, x.start - x0:x.stop - x0, z.start - z0:z.stop - z0],
                 slice(a - y.start, b - y.start))

    def block_done(k: int) -> None:
        _check_cancel(cancel)
        for i, b in enumerate(crops):
            if blocks[k][0] < b[1].stop <= blocks[k][1]:
                finished(i)

    _in_threads(crop_rows, blocks, done=block_done)


def _resize_plan(crop, crop_size: int, frames: int, level_by_level: bool) -> str:
    """How one crop is resized from its row blocks:

    * "rows": Y keeps its length: Z and X straight into the output (``resize_rows``);
    * "levels": Z and X into a (3, Y, crop, frames) buffer, then Y (``resize_columns``);
    * "whole": the windowed crop gathered whole, then torch's trilinear kernel -- where
      the levels differ from it (small outputs), or the windowed crop is no bigger than
      the "levels" buffer (one pass then costs less than two).
    """
    z, y, x = (s.stop - s.start for s in crop)
    if not level_by_level:
        return "whole"
    if y == crop_size:
        return "rows"
    return "whole" if x * z <= crop_size * frames else "levels"


def _crop_in_row_blocks(crops, resampled_hu, images, cancel, finished) -> None:
    """Fill ``images`` with the crops, each by its ``_resize_plan``."""
    crop_size, frames = images.shape[2], images.shape[4]
    exact = level_by_level_exact(crop_size, frames)
    plans = [_resize_plan(b, crop_size, frames, exact) for b in crops]
    buffers = []  # per crop: where its row blocks go
    for i, (plan, (z, y, x)) in enumerate(zip(plans, crops)):
        if plan == "rows":
            buffers.append(images[i])
        elif plan == "levels":
            buffers.append(torch.empty((3, y.stop - y.start, crop_size, frames), dtype=torch.float32))
        else:
            buffers.append(np.empty((3, y.stop - y.start, x.stop - x.start, z.stop - z.start), dtype=np.float32))

    def take(i: int, windows: np.ndarray, rows: slice) -> None:
        if plans[i] == "whole":
            np.copyto(buffers[i][:, rows], windows)
        else:
            resize_rows(torch.from_numpy(windows), buffers[i][:, rows])

    def rows_done(i: int) -> None:
        if plans[i] == "whole":
            resize_whole(torch.from_numpy(buffers[i]), images[i])
        if plans[i] != "levels":
            buffers[i] = None
            finished(i)

    _in_row_blocks(crops, resampled_hu, cancel, take, rows_done)
    columns = [(i, c) for i, plan in enumerate(plans) if plan == "levels" for c in column_ranges(crop_size, frames)]

    def columns_done(k: int) -> None:
        _check_cancel(cancel)
        i = columns[k][0]
        if k + 1 == len(columns) or columns[k + 1][0] != i:
            buffers[i] = None
            finished(i)

    _in_threads(lambda item: resize_columns(buffers[item[0]], images[item[0]], *item[1]), columns,
                done=columns_done)


def organ_crops(ct: Volume, seg: Volume, organs: list[str] | str | None = None, crop_size: int = 192,
                frames: int = 32, min_box: int = 192, max_box: int = 448, progress=None, cancel=None
                ) -> OrganCrops:
    """Crops of the requested organs present in ``seg`` (``None``: the default set;
    group names such as "lungs" expand through ``catalogue.resolve``).

    Raises ``InputError`` for unknown organ names or when none of them is present;
    ``Cancelled`` when ``cancel()`` returns True. ``progress(fraction, message)`` is
    called once per organ.
    """
    requested = catalogue.resolve(organs)
    _check_cancel(cancel)
    labels, resampled_hu, spacing = _resampler(ct, seg)
    _check_cancel(cancel)
    top = max(o.label_id for o in catalogue.organs())
    boxes_by_id = _find_boxes(labels, top)
    present = [o for o in requested if boxes_by_id[o.label_id - 1] is not None]
    missing = [o.name for o in requested if boxes_by_id[o.label_id - 1] is None]
    if not present:
        found = [catalogue.organ(i + 1).name for i, b in enumerate(boxes_by_id) if b is not None]
        raise InputError(seg.source, "none of the requested organs ({}) is in the segmentation; present: {}".format(
            ", ".join(o.name for o in requested) or "none", ", ".join(found) or "none"))

    crops = [crop_box(boxes_by_id[o.label_id - 1], labels.shape, min_box, max_box) for o in present]
    images = torch.empty((len(present), 3, crop_size, crop_size, frames), dtype=torch.float32)
    done = []

    def finished(i: int) -> None:
        done.append(i)
        if progress is not None:
            progress(len(done) / len(present), f"cropped {present[i].name}")

    _crop_in_row_blocks(crops, resampled_hu, images, cancel, finished)
    names = [o.name for o in present]
    return OrganCrops(images=images, organs=names, boxes=dict(zip(names, crops)), spacing=spacing,
                      missing=missing)
