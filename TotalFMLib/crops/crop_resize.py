"""The recipe's trilinear crop resize, done a few rows at a time, bit-identical to torch's.

For most output sizes ``F.interpolate(x[None], size=(H, W, D), mode="trilinear",
align_corners=False)`` on a (C, Y, X, Z) crop computes each output voxel as a Y
interpolation of X interpolations of Z interpolations, rounded to float32 at every
level. Torch's own kernels, called level by level, then give the same numbers, as long
as each call sees the whole length of the axes it interpolates (the weights depend only
on input and output length):

* ``resize_rows``: Z and X for some Y rows of a crop (Y untouched):
  ``upsample_linear1d`` where X keeps its length, else ``upsample_bilinear2d``;
* ``resize_columns``: Y for some (X, Z) columns of a crop already resized in X and Z
  (``upsample_bilinear2d`` keeping the columns).

A kernel keeping an axis's length weighs it 1 and 0, which changes no value. So a crop
can be windowed and resized in small blocks straight from the CT, without the windowed
crop ever existing whole. Every call stays below ``GRAIN`` outputs, torch's parallel
grain, so it runs on the calling thread: callers spread the blocks over their own
threads, which share a busy machine better than ops split into fixed halves.

For small outputs (the demo model's 96 x 96 x 32, for one) torch uses another kernel that
multiplies the weights out instead of nesting them; ``level_by_level_exact`` tells the
two apart on a seeded random crop, and callers then resize whole crops with
``resize_whole``. Testing/test_crop_resize.py checks equality with F.interpolate.
"""
from __future__ import annotations

import functools

import torch

# torch's at::internal::GRAIN_SIZE: smaller ops run on the calling thread
GRAIN = 32768

_linear = torch.ops.aten.upsample_linear1d.out
_bilinear = torch.ops.aten.upsample_bilinear2d.out


def rows_per_call(crop_size: int, frames: int) -> int:
    """Y rows of one channel that ``resize_rows`` resizes in one kernel call."""
    return max(1, (GRAIN - 1) // (crop_size * frames))


def columns_per_call(crop_size: int) -> int:
    """(X, Z) columns of one channel that ``resize_columns`` resizes in one kernel call."""
    return max(1, (GRAIN - 1) // crop_size)


def resize_rows(src: torch.Tensor, out: torch.Tensor) -> None:
    """(C, r, X, Z) rows of a crop (any strides, Z of stride 1) -> ``out`` (C, r, W, D):
    X to W and Z to D as the trilinear resize of the whole crop does."""
    x_len, out_w, out_d = src.shape[2], out.shape[2], out.shape[3]
    step = rows_per_call(out_w, out_d)
    for c in range(src.shape[0]):
        for r in range(0, src.shape[1], step):
            s, o = src[c, r:r + step], out[c, r:r + step]
            if x_len == out_w:
                _linear(s, [out_d], False, out=o)
            else:  # rows as the batch, one channel: torch's generic kernel whatever the thread count
                _bilinear(s.unsqueeze(1), [out_w, out_d], False, out=o.unsqueeze(1))


def resize_columns(src: torch.Tensor, out: torch.Tensor, start: int, stop: int) -> None:
    """Columns [start, stop) of ``src`` (C, Y, W, D), flattened over (W, D), resized along
    Y into ``out`` (C, H, W, D): the outer level of the trilinear resize."""
    channels, y_len = src.shape[:2]
    out_h = out.shape[1]
    flat_src = src.reshape(channels, 1, y_len, -1)
    flat_out = out.view(channels, 1, out_h, -1)
    for c in range(channels):
        _bilinear(flat_src[c:c + 1, :, :, start:stop], [out_h, stop - start], False,
                  out=flat_out[c:c + 1, :, :, start:stop])


def column_ranges(crop_size: int, frames: int) -> list[tuple[int, int]]:
    """[start, stop) pieces of the crop_size * frames columns for ``resize_columns``."""
    n, step = crop_size * frames, columns_per_call(crop_size)
    return [(start, min(n, start + step)) for start in range(0, n, step)]


def resize_levels(src: torch.Tensor, crop_size: int, frames: int) -> torch.Tensor:
    """A whole (C, Y, X, Z) crop through ``resize_rows`` and ``resize_columns``."""
    channels, y_len = src.shape[:2]
    out = torch.empty((channels, crop_size, crop_size, frames), dtype=torch.float32)
    rows = out if y_len == crop_size else torch.empty((channels, y_len, crop_size, frames), dtype=torch.float32)
    resize_rows(src, rows)
    if rows is not out:
        for start, stop in column_ranges(crop_size, frames):
            resize_columns(rows, out, start, stop)
    return out


def resize_whole(src: torch.Tensor, out: torch.Tensor) -> None:
    """``out`` (C, H, W, D) = the trilinear resize of the whole crop ``src`` (C, Y, X, Z)."""
    torch.ops.aten.upsample_trilinear3d.out(src.unsqueeze(0), list(out.shape[1:]), False, out=out.unsqueeze(0))


@functools.lru_cache(maxsize=None)
def level_by_level_exact(crop_size: int, frames: int) -> bool:
    """Whether ``resize_levels`` equals torch's trilinear resize to this size (checked once
    per size on a seeded random crop that every level resizes)."""
    generator = torch.Generator().manual_seed(0)
    src = torch.rand((3, crop_size + 3, crop_size + 5, frames + 7), generator=generator)
    want = torch.empty((3, crop_size, crop_size, frames), dtype=torch.float32)
    resize_whole(src, want)
    return torch.equal(resize_levels(src, crop_size, frames), want)
