"""The source of DICOM output: the CT series a result was computed on, checked for what the
SEG and SR must reference (UIDs, one header per volume slice), and what both objects share
(highdicom present, the manufacturer's name).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError

MANUFACTURER = "TotalFMSlicer"
INSTALL_HINT = 'pip install "TotalFMLib[dicom]" (highdicom, pynetdicom, dicomweb-client)'


def require_highdicom():
    """highdicom, or an InputError with the install hint."""
    try:
        import highdicom
    except ImportError:
        raise InputError(None, f"DICOM output needs highdicom: {INSTALL_HINT}") from None
    return highdicom


@dataclass
class SourceSeries:
    """The CT series a result was computed on: its headers in slice order."""

    folder: str
    headers: list            # pydicom Datasets, no pixel data, in the CT volume's slice order

    @property
    def study_uid(self) -> str:
        return str(self.headers[0].StudyInstanceUID)

    @property
    def series_uid(self) -> str:
        return str(self.headers[0].SeriesInstanceUID)


def source_series(ct) -> SourceSeries:
    """The source series of a CT ``Volume`` read from DICOM (``ct.meta["files"]``: its files, in
    any order; they are put in the volume's slice order here), checked for what DICOM output
    needs (UIDs); InputError naming the CT otherwise."""
    import pydicom

    files = ct.meta.get("files") if ct.meta.get("format") == "DICOM" else None
    where = ct.source or "CT"
    if not files:
        raise InputError(where, "DICOM output needs a CT read from a DICOM series folder (the SEG and SR "
                                "reference its images); this CT is a " + str(ct.meta.get("format", "volume")))
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    slice_axis = np.asarray(ct.direction, dtype=float).reshape(3, 3)[:, 2]
    headers.sort(key=lambda h: float(np.asarray(h.get("ImagePositionPatient") or (0, 0, 0), dtype=float) @ slice_axis))
    missing = [name for name in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "SOPClassUID",
                                 "FrameOfReferenceUID") if not str(headers[0].get(name, "") or "")]
    if missing:
        raise InputError(where, f"its DICOM headers have no {', '.join(missing)} (anonymised by blanking?); "
                                f"DICOM output must reference the source series by its UIDs")
    return SourceSeries(str(where), headers)


def check_same_slices(ct, source: SourceSeries) -> None:
    """The CT volume's slices are the source headers in order (row, column and slice axes)."""
    d = np.asarray(ct.direction, dtype=float).reshape(3, 3)
    iop = np.asarray(source.headers[0].ImageOrientationPatient, dtype=float)
    if len(source.headers) != ct.shape[0] or not (np.allclose(iop[:3], d[:, 0], atol=1e-3)
                                                   and np.allclose(iop[3:], d[:, 1], atol=1e-3)):
        raise InputError(source.folder, "the CT volume does not follow its DICOM slices one to one; "
                                        "cannot write a SEG on this series")
    for k, h in enumerate(source.headers):
        offset = np.asarray(h.ImagePositionPatient, dtype=float) - np.asarray(ct.origin)
        if abs(float(offset @ d[:, 2]) - k * ct.spacing[2]) > 0.01 * ct.spacing[2] + 1e-3:
            raise InputError(source.folder, f"slice {k} of the DICOM series is not where the CT volume has it; "
                                            f"cannot write a SEG on this series")
