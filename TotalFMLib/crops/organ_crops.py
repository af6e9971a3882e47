"""Organ crops, fast: the recipe of ``recipe.py`` made without resampling whole volumes,
bit-identical to it (Testing/test_preprocess.py, Testing/test_grid_resample.py).

``grid_resample.GridMap`` gets ITK's own per-axis sampling positions from three tiny 1-D
SimpleITK probes; the label map on the new grid is then a (usually strided, copy-free) pick
of the original voxels, scanned once for all organs (``scipy.ndimage.find_objects``). The CT
is then handled a few Y rows at a time: each block is interpolated (in ITK's order and
float64 arithmetic, bit-identical to SimpleITK's whole-volume ``Resample``), windowed, and
resized for every crop it touches while it is in the CPU cache (``crop_resize``: torch's own
kernels, level by level, bit-identical to the trilinear resize of the whole crop), the blocks
spread over the CPU threads. Oblique directions, where the sampling is not separable, fall
back to SimpleITK on the whole volume.

``crop_case`` takes a ``Case`` that passed the door (``inputs.load_case``) and checks nothing
again; ``organ_crops`` takes two Volumes and checks that they share a grid first.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import Cancelled, InputError
from ..inputs.case import Case
from ..inputs.label_maps import check_same_grid
from ..inputs.volume import Volume
from ..vocabulary import catalogue
from .crop_resize import column_ranges, level_by_level_exact, resize_columns, resize_rows, resize_whole
from .ct_windows import WINDOWS
from .recipe import (FILL_HU, crop_box, label_array, labelled_box, resample_to, target_size, target_spacing,
                     window_into)

@dataclass
class OrganCrops:
    """One case's organ crops, ready for the image encoder.

    ``images[i]`` belongs to ``organs[i]`` (structure names in label order);
    ``boxes[name]`` is its (Z, Y, X) crop on the resampled grid of spacing ``spacing``
    (x, y, z mm); ``missing`` lists requested organs absent from the segmentation.
    ``shared``: one crop, ``images[0]``, stands for every organ (the whole-volume baseline
    of the evaluation).
    """

    images: torch.Tensor
    organs: list[str]
    boxes: dict[str, tuple[slice, slice, slice]] = field(default_factory=dict)
    spacing: tuple[float, float, float] | None = None
    missing: list[str] = field(default_factory=list)
    shared: bool = False


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
    window_into(rows, out)
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


def _resampler(ct: Volume, seg: Volume):
    """(label map on the recipe's grid, ``hu(region) -> float32 CT on that region``, spacing).

    Exact either way: separable grids (0/+-1 directions) read only what is asked for
    (``grid_resample``); others are resampled whole with SimpleITK.
    """
    from .grid_resample import GridMap

    spacing = target_spacing(ct.spacing)
    size = target_size(ct.shape[::-1], ct.spacing, spacing)
    grid = GridMap.probe(ct.spacing, ct.origin, ct.direction, ct.shape, spacing, size)
    if grid is None:
        r_ct, r_seg = resample_to(ct, seg, spacing)
        return r_seg.array, lambda region: r_ct.array[region], tuple(float(s) for s in r_ct.spacing)
    labels = grid.nearest(label_array(seg))
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
    """``crop_case`` of two Volumes, after checking that the label map lies on the CT's grid
    (``InputError`` naming what differs otherwise)."""
    check_same_grid(seg, ct)
    return crop_case(Case(ct, seg), organs, crop_size, frames, min_box, max_box, progress, cancel)


def crop_case(case: Case, organs: list[str] | str | None = None, crop_size: int = 192, frames: int = 32,
              min_box: int = 192, max_box: int = 448, progress=None, cancel=None) -> OrganCrops:
    """Crops of the requested organs present in the case's label map (``None``: the default
    set; group names such as "lungs" expand through ``catalogue.resolve``).

    Raises ``InputError`` for unknown organ names or when none of them is present;
    ``Cancelled`` when ``cancel()`` returns True. ``progress(fraction, message)`` is
    called once per organ.
    """
    ct, seg = case
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
