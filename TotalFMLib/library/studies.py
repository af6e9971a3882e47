"""The studies under a folder, and the segmentation of each (the naming rule).

A study is:

- a CT file directly or deeper under ROOT (``.nii.gz``, ``.nii``, ``.nrrd``, ``.nhdr``, ``.mha``,
  ``.mhd``) that is not itself a segmentation, or
- a folder holding DICOM files (its subfolders included: a study with several series; the CT
  series is chosen as ``inputs.dicom_series`` says). A folder inside a study folder is not a
  study of its own.

Its segmentation, for a study named S (file name without extensions, or folder name), is the
first of these that exists beside it: ``S_seg.nii.gz``, ``S_seg.nii``, ``S.seg.nrrd``, a mask
folder ``S_seg/`` (TotalSegmentator's ``<structure>.nii.gz`` output). Without one,
TotalSegmentator segments the CT when its inference is installed; otherwise the study is
recorded as failed with that reason. Files and folders whose names end in ``_seg`` (or
``.seg.nrrd``) are segmentations, never studies.
"""
from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..inputs.image_files import IMAGE_SUFFIXES, SEG_NRRD_SUFFIX, file_suffix, is_dicom_file

SEG_PATTERNS = ("{}_seg.nii.gz", "{}_seg.nii", "{}.seg.nrrd", "{}_seg")


@dataclass(frozen=True)
class StudySource:
    path: Path               # the CT file or the DICOM folder
    relative: str            # its path under ROOT (the study's name in the library)
    segmentation: Path | None

    @functools.cached_property  # read once: the indexer asks for it when sorting out what to do and when writing
    def key(self) -> str:
        """Identity for resuming: relative path, size and modification time of what is read."""
        h = hashlib.sha256(self.relative.encode())
        for p in (self.path, self.segmentation):
            if p is None:
                continue
            for f in ([p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())):
                st = f.stat()
                h.update(f"{f.relative_to(p) if p.is_dir() else f.name}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:32]


def _stem(path: Path) -> str:
    suffix = file_suffix(path)
    return path.name[: -len(suffix)] if suffix and path.is_file() else path.name


def _is_segmentation(path: Path) -> bool:
    name = path.name.lower()
    return name.endswith(SEG_NRRD_SUFFIX) or _stem(path).lower().endswith("_seg")


def segmentation_for(path: Path) -> Path | None:
    """The segmentation beside a study by the naming rule (module docstring), or None."""
    stem = _stem(path)
    for pattern in SEG_PATTERNS:
        candidate = path.parent / pattern.format(stem)
        if candidate.exists():
            return candidate
    return None


def _holds_dicom(folder: Path) -> bool:
    for root, _, names in os.walk(folder):
        for name in names:
            if not name.startswith(".") and is_dicom_file(Path(root) / name):
                return True
    return False


def find_studies(root) -> list[StudySource]:
    """Every study under ``root`` (module docstring), in path order."""
    root = Path(root).expanduser()
    found: list[StudySource] = []

    def visit(folder: Path) -> None:
        for p in sorted(q for q in folder.iterdir() if not q.name.startswith(".")):
            if _is_segmentation(p):
                continue
            if p.is_file() and file_suffix(p) in IMAGE_SUFFIXES:
                found.append(StudySource(p, str(p.relative_to(root)), segmentation_for(p)))
            elif p.is_dir():
                if _holds_dicom(p):  # a DICOM study: the whole folder, its series included
                    found.append(StudySource(p, str(p.relative_to(root)), segmentation_for(p)))
                else:
                    visit(p)

    visit(root)
    return found
