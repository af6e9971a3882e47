"""The benchmark's base CTs: real patients with TotalSegmentator segmentations that install
from PyPI (``inputs.sample_data``), which patient each is and which split it belongs to, and
their volumes on the benchmark's grid (loaded once, cached as ``.npz``)."""
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
    name: str       # base id, prefix of its case ids
    ct: str         # sample_data name of the CT (NIfTI file or DICOM folder)
    seg: str        # sample_data name of its TotalSegmentator label map
    patient: str    # one person; a patient is never in both the training and the test split
    split: str


# The real CTs with segmentations that install from PyPI (docs/published_facts.md). example_ct_sm is
# slices 82-111 of example_ct (the same patient), so it serves as validation only; the DICOM
# series is a different patient and is the held-out test CT. The chest CTA in the same
# package has no segmentation and is not used.
BASES: tuple[BaseCT, ...] = (
    BaseCT("example_ct", "example_ct", "example_seg", "totalseg-example", "train"),
    BaseCT("example_ct_sm", "example_ct_sm", "example_seg_sm", "totalseg-example", "val"),
    BaseCT("example_ct_dicom", "example_ct_dicom", "example_seg_dicom", "totalseg-dicom", "test"),
)


def base_by_name(name: str) -> BaseCT:
    for b in BASES:
        if b.name == name:
            return b
    raise InputError(None, f"unknown base CT {name!r}; known: {', '.join(b.name for b in BASES)}")


def check_splits(bases: list[BaseCT]) -> None:
    """InputError when a test patient also appears in the training split."""
    train = {b.patient for b in bases if b.split == "train"}
    leaked = [b.name for b in bases if b.split == "test" and b.patient in train]
    if leaked:
        raise InputError(None, f"test base(s) {', '.join(leaked)} share a patient with the training split")


BASE_CACHE_VERSION = 1  # of the bases/<name>.npz files written by load_base


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
    from ..inputs.segmentation import load_segmentation
    from ..inputs.sample_data import fetch

    ct = load_ct(fetch(base.ct))
    seg = load_segmentation(fetch(base.seg), ct)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, ct=ct.array, seg=seg.array, spacing=ct.spacing, origin=ct.origin,
                                    direction=ct.direction, source=str(ct.source), seg_source=str(seg.source),
                                    version=BASE_CACHE_VERSION)
    return ct, seg


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
