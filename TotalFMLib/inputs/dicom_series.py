"""Which series of a DICOM study folder is the CT to score (``choose_ct_series``).

A study as a PACS or a CD delivers it holds several series: localizers (scouts,
topograms), secondary captures (dose reports, key images), lung or bone reconstructions
next to the soft-tissue one, thin and thick slices, sagittal and coronal reformats. The
folder (and its subfolders) is read header by header (pydicom, no pixel data) and every
series is kept or skipped with a reason:

- skipped: not CT (modality), a secondary capture or other non-image object, a localizer
  (Image Type LOCALIZER / SCOUT / TOPOGRAM), not axial (slice normal more than ~25 degrees
  off the patient's head-feet axis), a single image;
- refused (a series that would be scored wrongly): images of different sizes, pixel
  spacings or orientations in one series ("mixed sizes"), two images at one position,
  or missing slices (a gap over 1.5 times the usual slice distance).

Of the usable series the soft-tissue reconstruction is preferred (convolution kernel,
then series description), then the thinnest slices, then the most slices. The choice and
every skip are said in one note (``SeriesChoice.note``). A folder with no usable series is
refused in one line that gives each series' reason.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from .image_files import short_list

CT_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1"}  # CT, Enhanced CT Image Storage
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
LOCALIZER_TYPES = {"LOCALIZER", "SCOUT", "TOPOGRAM", "SCANOGRAM"}
MIN_AXIAL_COSINE = 0.9           # |slice normal . head-feet axis| of an axial series
MAX_GAP_RATIO = 1.5              # a slice distance over this times the median: slices missing
_SHARP_WORDS = ("lung", "bone", "sharp", "edge", "detail", "ultra", "high res", "hr")
_SOFT_WORDS = ("soft", "standard", "std", "body", "abdomen", "mediastin", "smooth")


@dataclass
class Series:
    """One series of the folder, as read from its headers."""

    uid: str
    files: list[Path] = field(default_factory=list)
    headers: list = field(default_factory=list)   # pydicom Datasets without pixel data
    skipped: str = ""                              # why it is not scored ("" when usable)

    @property
    def first(self):
        return self.headers[0]

    @property
    def description(self) -> str:
        return str(self.first.get("SeriesDescription", "") or "").strip()

    @property
    def label(self) -> str:
        """How the series is named in messages: description and (shortened) UID."""
        uid = self.uid if len(self.uid) <= 24 else "..." + self.uid[-20:]
        return f"'{self.description}' ({uid or 'no UID'})" if self.description else (uid or "(no series UID)")

    @property
    def thickness(self) -> float:
        try:
            return float(self.first.get("SliceThickness") or 0) or self.spacing
        except (TypeError, ValueError):
            return self.spacing

    @property
    def spacing(self) -> float:
        z = self.positions()
        return float(np.median(np.diff(z))) if len(z) > 1 else 0.0

    @property
    def kernel(self) -> str:
        value = self.first.get("ConvolutionKernel") or ""
        return value if isinstance(value, str) else "\\".join(str(v) for v in value)

    def normal(self) -> np.ndarray:
        iop = np.asarray(self.first.ImageOrientationPatient, dtype=float)
        return np.cross(iop[:3], iop[3:])

    def positions(self) -> np.ndarray:
        """Slice positions along the slice normal, sorted."""
        n = self.normal()
        return np.sort([float(np.dot(np.asarray(h.ImagePositionPatient, dtype=float), n)) for h in self.headers])

    def sorted_files(self) -> list[Path]:
        """The files in slice order (along the normal)."""
        n = self.normal()
        keys = [float(np.dot(np.asarray(h.ImagePositionPatient, dtype=float), n)) for h in self.headers]
        return [f for _, f in sorted(zip(keys, self.files), key=lambda kf: kf[0])]


@dataclass
class SeriesChoice:
    chosen: Series
    usable: list[Series]
    skipped: list[Series]

    @property
    def note(self) -> str:
        s = self.chosen
        text = (f"chose series {s.label}: {len(s.files)} axial slices, {s.thickness:g} mm, "
                f"kernel {s.kernel or 'not given'}")
        if len(self.usable) > 1:
            text += f"; the {_kind(s)} reconstruction with the thinnest slices of {len(self.usable)} usable series"
        if self.skipped:
            text += "; skipped " + short_list(f"{x.label} ({x.skipped})" for x in self.skipped)
        return text


def _kind(series: Series) -> str:
    return {0: "soft-tissue", 1: "unlabelled-kernel", 2: "sharp (lung/bone)"}[_kernel_rank(series)]


def _kernel_rank(series: Series) -> int:
    """0 soft tissue, 1 unknown, 2 sharp (lung, bone): from the kernel, then the description."""
    for text in (series.kernel.lower(), series.description.lower()):
        words = re.split(r"[^a-z0-9+]+", text)
        if any(w in text for w in _SHARP_WORDS if " " in w) or any(w in words for w in _SHARP_WORDS):
            return 2
        if any(w in text for w in _SOFT_WORDS):
            return 0
        m = re.match(r"^[a-z]{1,2}(\d{2})", text)  # Siemens-style B30f, Br38f, Bl57: sharper from ~50
        if m:
            return 0 if int(m.group(1)) < 50 else 2
    return 1


def read_headers(folder: Path) -> dict[str, Series]:
    """{series key: Series} of every DICOM image file under ``folder`` (pixel data not read)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    series: dict[str, Series] = {}
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            path = Path(root) / name
            try:
                ds = pydicom.dcmread(path, stop_before_pixels=True)
            except (InvalidDicomError, OSError, ValueError, EOFError, AttributeError):
                continue
            if "Rows" not in ds:  # no image: structure sets, reports, presentation states
                continue
            uid = str(ds.get("SeriesInstanceUID", "") or "")
            key = uid or f"(no UID) {os.path.relpath(root, folder)}"
            series.setdefault(key, Series(uid)).files.append(path)
            series[key].headers.append(ds)
    return series


def _sop_class(ds) -> str:
    value = str(ds.get("SOPClassUID", "") or "")
    return value or str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")


def skip_reason(s: Series) -> str:
    """Why a series is not a candidate ("" when it is)."""
    ds = s.first
    modality = str(ds.get("Modality", "") or "").upper()
    if modality and modality != "CT":
        return f"modality {modality}"
    sop = _sop_class(ds)
    if sop.startswith(SECONDARY_CAPTURE_PREFIX):
        return "secondary capture"
    if sop and sop not in CT_SOP_CLASSES:
        return f"not a CT image object (SOP class {sop})"
    if "PixelSpacing" not in ds and "ImageOrientationPatient" not in ds:
        return "no image geometry"
    image_type = {str(v).upper() for v in (ds.get("ImageType") or [])}
    if image_type & LOCALIZER_TYPES:
        return "localizer"
    if "ImageOrientationPatient" not in ds or "ImagePositionPatient" not in ds:
        return "no image position or orientation"
    if abs(s.normal()[2]) < MIN_AXIAL_COSINE:
        return "not axial (a sagittal, coronal or oblique reconstruction)"
    if len(s.files) < 2:
        return "a single slice"
    return ""


def check_series(folder: Path, s: Series) -> None:
    """InputError for a series that would be read wrongly: mixed sizes, duplicate positions,
    missing slices."""
    def geometry(h):
        return (int(h.Rows), int(h.Columns), tuple(round(float(v), 4) for v in h.get("PixelSpacing") or ()),
                tuple(round(float(v), 3) for v in h.ImageOrientationPatient))

    shapes = {geometry(h) for h in s.headers}
    if len(shapes) > 1:
        sizes = sorted({f"{r}x{c}" + (f" at {p[0]:g}x{p[1]:g} mm" if len(p) == 2 else "") for r, c, p, _ in shapes})
        raise InputError(folder, f"series {s.label} mixes images of different sizes, pixel spacings or "
                                 f"orientations ({', '.join(sizes)}); expected one CT volume per series")
    z = s.positions()
    steps = np.diff(z)
    if np.any(steps < 1e-3):
        raise InputError(folder, f"series {s.label} has {int(np.sum(steps < 1e-3))} images at a position already "
                                 f"taken (several phases or a repeated slice in one series); expected one image per "
                                 f"position")
    usual = float(np.median(steps))
    gaps = np.flatnonzero(steps > MAX_GAP_RATIO * usual)
    if gaps.size:
        i = int(gaps[0])
        missing = int(round(float(np.sum(steps[gaps])) / usual)) - gaps.size
        raise InputError(folder, f"series {s.label} has missing slices: {steps[i]:.3g} mm between slice positions "
                                 f"{z[i]:.5g} and {z[i + 1]:.5g} where slices are {usual:.3g} mm apart "
                                 f"(about {missing} missing, {gaps.size} gap{'s' if gaps.size > 1 else ''})")


def choose_ct_series(folder: Path) -> SeriesChoice | None:
    """The CT series of ``folder`` to score (module docstring), InputError when none is
    usable, None when the folder holds no DICOM image at all."""
    series = read_headers(folder)
    if not series:
        return None
    usable, skipped = [], []
    for s in series.values():
        s.skipped = skip_reason(s)
        if not s.skipped:
            try:
                check_series(folder, s)
            except InputError as e:
                if len(series) == 1:  # the folder's only series: its problem is the folder's
                    raise
                s.skipped = e.problem.removeprefix(f"series {s.label} ")  # "has missing slices: ..."
        (skipped if s.skipped else usable).append(s)
    if not usable:
        only = next(iter(series.values()))
        if len(series) == 1 and only.skipped.startswith("modality"):
            modality = str(only.first.get("Modality", "")).upper()
            raise InputError(folder, f"is a {modality} series (DICOM Modality {modality}); expected a CT series")
        if len(series) == 1 and only.skipped == "a single slice":
            raise InputError(folder, "holds a single slice of a CT series; expected a 3-D CT volume with "
                                     "several slices")
        raise InputError(folder, "holds no usable CT series: " + short_list(f"{s.label} ({s.skipped})"
                                                                           for s in series.values()))
    usable.sort(key=lambda s: (_kernel_rank(s), round(s.thickness, 3), -len(s.files)))
    return SeriesChoice(usable[0], usable, skipped)
