"""The organ segmentation: an int16 map of TotalSegmentator v2 ``total`` label ids on the CT's
voxel grid, read from a multi-label image (NIfTI, NRRD, MetaImage; a TotalSegmentator NIfTI's
own label table maps its ids by name), a TotalSegmentator folder of ``<structure>.nii.gz``
masks (``seg_folder``) or a 3D Slicer ``.seg.nrrd`` (``seg_nrrd``).

Rules (``check_labels``): 3-D, integer values, every id 0 or a ``total`` id, at least one
organ voxel, and the CT's grid (``label_maps.onto_ct_grid``: the same grid, or the same
voxels stored in another axis order, which is reordered without resampling; anything else
is refused, never resampled).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..vocabulary import catalogue
from .image_files import IMAGE_SUFFIXES, MASK_SUFFIXES, SEG_NRRD_SUFFIX, existing_path, file_suffix, read_image, short_list
from .label_maps import integer_array, label_counts, onto_ct_grid, volume_name
from .label_names import relabel
from .seg_folder import read_mask_folder
from .seg_nrrd import is_seg_nrrd, read_seg_nrrd
from .volume import Volume


def load_segmentation(path, ct: Volume) -> Volume:
    """int16 label map of TotalSegmentator v2 ``total`` ids on the grid of ``ct`` (a checked
    CT ``Volume``).

    ``path``: a multi-label image, a TotalSegmentator folder of masks, a 3D Slicer
    ``.seg.nrrd`` (segments matched by name, else by SNOMED code), or a ``Volume``.
    ``meta`` lists what was not used: ``unmatched`` names, ``empty`` organs;
    ``meta["organs"]`` = {organ: voxels}.
    """
    if isinstance(path, Volume):
        seg = path.with_array(path.array)
        seg.meta.setdefault("format", "volume")
        return _finish(seg, ct)
    p = existing_path(path)
    if p.is_dir():
        return _finish(read_mask_folder(p, ct), ct)
    suffix = file_suffix(p)
    if suffix == SEG_NRRD_SUFFIX or (suffix == ".nrrd" and is_seg_nrrd(p)):
        return _finish(read_seg_nrrd(p), ct)
    image = read_image(p, "label map")
    seg = Volume.from_sitk(image, source=str(p))
    seg.meta["format"] = IMAGE_SUFFIXES[suffix]
    if suffix in MASK_SUFFIXES:
        seg = _relabel_by_table(seg, p)
    return _finish(seg, ct)


def check_labels(seg: Volume) -> dict[int, int]:
    """Checks the label map's values; returns {label id: voxel count} without 0."""
    where = volume_name(seg, "segmentation")
    a = seg.array
    if a.ndim != 3:
        raise InputError(where, f"is {a.ndim}-D (shape {a.shape}); expected a 3-D label map")
    a = integer_array(where, a, "label map of organ ids")
    counts = label_counts(a)
    known = {o.label_id for o in catalogue.organs()}
    unknown = sorted(set(counts) - known - {0})
    if unknown and (len(counts) > 255 or unknown[0] < 0):
        raise InputError(where, f"holds {len(counts)} distinct values from {min(counts)} to {max(counts)}, "
                                f"not TotalSegmentator 'total' label ids ({min(known)}-{max(known)}): "
                                f"is this the CT image?")
    if unknown:
        raise InputError(where, f"holds label ids not in the TotalSegmentator v2 'total' map: "
                                f"{short_list(unknown)} (known ids are {min(known)}-{max(known)})")
    counts.pop(0, None)
    if not counts:
        raise InputError(where, "holds no organ: every voxel is 0 (background); expected "
                                "TotalSegmentator 'total' label ids")
    return counts



def _finish(seg: Volume, ct: Volume) -> Volume:
    """Common tail of every segmentation reader: CT grid, value checks, int16, meta."""
    seg = onto_ct_grid(seg, ct)
    counts = check_labels(seg)
    seg.array = seg.array.astype(np.int16, copy=False)
    seg.meta["organs"] = {catalogue.organ(i).name: n for i, n in sorted(counts.items())}
    return seg



def _label_table(path: Path) -> dict[int, str] | None:
    """The label names TotalSegmentator stores in a NIfTI header extension, if any."""
    import nibabel as nib

    try:
        extensions = nib.load(str(path)).header.extensions
    except Exception:  # nibabel cannot parse it: SimpleITK's reading already succeeded
        return None
    pattern = re.compile(r'<Label\s+Key="(-?\d+)"[^>]*>\s*(?:<!\[CDATA\[)?(.*?)(?:\]\]>)?\s*</Label>', re.S)
    for ext in extensions:
        content = ext.get_content()
        text = content.decode("utf-8", "replace") if isinstance(content, bytes) else str(content)
        table = {int(k): name.strip() for k, name in pattern.findall(text)}
        if table:
            return table
    return None


def _relabel_by_table(seg: Volume, path: Path) -> Volume:
    """Map ids to ``total`` ids by the file's own label names (a file from another task or
    TotalSegmentator version uses other ids; ``label_names``); ids whose name is no organ are
    dropped. A file without a label table is returned as it is."""
    table = _label_table(path)
    return relabel(seg, table, path) if table else seg
