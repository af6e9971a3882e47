"""The published TotalFM organ-crop recipe, step by step (docs/published_facts.md, "Organ crop");
the released weights depend on it:

1. Resample the CT (linear, fill -1000 HU) and the label map (nearest neighbour) with
   SimpleITK to spacing ``(max(0.6, sx), max(0.6, sy), max(3.0, sz))`` mm, same origin and
   direction. New size per axis: ``max(1, round(size * spacing / new_spacing))`` with
   Python's ``round`` (halves to even). Arrays stay in SimpleITK (Z, Y, X) order.
2. Per organ, the bounding box of its voxels in the resampled label map; Z keeps the whole
   extent, Y and X follow ``crop_range`` (the 192/448 rule).
3. Three windows on the cropped HU (``window_channels``): lung, soft tissue, bone, from
   ``ct_windows.WINDOWS``.
4. Layout (3, Y, X, Z), trilinear resize (``align_corners=False``) to (crop, crop, frames).

These functions are the reference; ``organ_crops`` makes the same crops bit for bit without
resampling whole volumes.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from ..inputs.label_maps import check_same_grid
from ..inputs.volume import Volume
from .crop_resize import resize_whole
from .ct_windows import WINDOWS, window_range

FILL_HU = -1000.0
MIN_SPACING = (0.6, 0.6, 3.0)  # mm, (x, y, z)


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


def label_array(seg: Volume) -> np.ndarray:
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
    new_seg = resample_array(ct, label_array(seg), spacing, size, linear=False)
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
    window_into(x, out)
    return out


def window_into(x: np.ndarray, out: np.ndarray) -> None:
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


def labelled_box(labels: np.ndarray) -> tuple[slice, slice, slice] | None:
    """The box around all positive labels (two fast max-projections), None if there are none."""
    in_plane = labels.max(axis=0) > 0
    along = [labels.max(axis=(1, 2)) > 0, in_plane.any(axis=1), in_plane.any(axis=0)]
    if not along[0].any():
        return None
    return tuple(slice(int(np.argmax(a)), len(a) - int(np.argmax(a[::-1]))) for a in along)


def crop_tensor(hu: np.ndarray, crop_size: int = 192, frames: int = 32) -> torch.Tensor:
    """(3, crop_size, crop_size, frames) float32 from an HU crop in (Z, Y, X) order."""
    return resize_channels(window_channels(hu), crop_size, frames)
