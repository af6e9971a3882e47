"""A TotalSegmentator output folder of per-organ ``<structure>.nii.gz`` masks as one label map
on the CT's grid (masks named after no organ are listed, empty ones noted)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..vocabulary import catalogue
from ..errors import InputError
from .image_files import MASK_SUFFIXES, read_image, short_list
from .label_maps import integer_array, onto_ct_grid
from .volume import Volume


def read_mask_folder(folder: Path, ct: Volume) -> Volume:
    """The folder's organ masks as one int16 label map on the CT's grid; a later organ
    (higher label id) wins where masks overlap (``meta["overlap_voxels"]`` counts them)."""
    files = sorted(f for f in folder.iterdir() if f.is_file() and not f.name.startswith("."))
    masks = [f for f in files if f.name.lower().endswith(MASK_SUFFIXES)]
    if not files:
        raise InputError(folder, "folder is empty; expected a TotalSegmentator output folder of "
                                 "<structure>.nii.gz masks")
    if not masks:
        raise InputError(folder, f"holds no <structure>.nii.gz masks ({len(files)} other files); "
                                 f"expected a TotalSegmentator output folder")
    known, unmatched = [], []
    for f in masks:
        stem = re.sub(r"\.nii(\.gz)?$", "", f.name, flags=re.I)
        organ = catalogue.match_segment_name(stem)
        (known.append((organ, f)) if organ else unmatched.append(f.name))
    if not known:
        raise InputError(folder, f"no mask is named after a TotalSegmentator organ "
                                 f"({short_list(unmatched, 5)}); expected files such as liver.nii.gz")
    labels = np.zeros(ct.shape, np.int16)
    empty, overlap = [], 0
    for organ, f in sorted(known, key=lambda k: k[0].label_id):
        image = read_image(f, "organ mask")
        mask = Volume.from_sitk(image, source=str(f))
        mask.array = integer_array(str(f), mask.array, "binary organ mask") != 0
        inside = onto_ct_grid(mask, ct).array
        if not inside.any():
            empty.append(organ.name)
            continue
        overlap += int(np.count_nonzero(labels[inside]))
        labels[inside] = organ.label_id
    meta = {"format": "TotalSegmentator folder", "empty": empty, "unmatched": unmatched,
            "overlap_voxels": overlap}
    if len(empty) == len(known):
        raise InputError(folder, f"holds no organ: all {len(known)} organ masks are empty")
    return Volume(labels, tuple(ct.spacing), tuple(ct.origin), tuple(ct.direction),
                  source=str(folder), meta=meta)
