"""Real DICOM studies for the DICOM and PACS tests, made from the example series.

TotalSegmentator's ``example_ct_dicom`` is a real CT series (Siemens, JPEG 2000 lossless,
20 slices) anonymised by blanking: its Study, Series and SOP Instance UIDs, Patient ID and
name are empty. A PACS files every object under those UIDs, and a SEG or SR must reference
them, so ``complete_series`` writes a copy with them filled in (the SOP Instance UID from
the file meta, the others made up, the same at every run). Pixel data and every other
attribute stay as they are.

``study_with_extras`` adds what a real study folder holds beside the soft-tissue series:
a localizer, a secondary capture, a sharp (lung kernel) reconstruction, each in its own
subfolder, made from the same real slices with the attributes that mark them changed.
"""
from __future__ import annotations

from pathlib import Path

PATIENT_ID = "TOTALFM-EXAMPLE-1"
PATIENT_NAME = "Example^TotalSegmentator"


def _uid(*parts: str) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["totalfm-test", *parts])


def complete_series(source: Path, out: Path, series: str = "soft", study: str = "study-1") -> list[Path]:
    """Copy of the example series with its UIDs and patient filled in; the written files."""
    import pydicom

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(source.iterdir()):
        ds = pydicom.dcmread(path)
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID if series == "soft" else \
            _uid(study, series, str(ds.file_meta.MediaStorageSOPInstanceUID))
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID = _uid(study)
        ds.SeriesInstanceUID = _uid(study, series)
        ds.PatientID, ds.PatientName = PATIENT_ID, PATIENT_NAME
        ds.StudyID, ds.AccessionNumber = "1", "ACC0001"
        ds.SeriesNumber = {"soft": 2, "lung": 3, "scout": 1, "capture": 99}.get(series, 5)
        target = out / f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(target)
        written.append(target)
    return written


def study_with_extras(source: Path, out: Path) -> Path:
    """A study folder: soft/ (the example series), lung/ (same slices, lung kernel, thinner
    nominal slices), scout/ (one slice marked LOCALIZER), capture/ (one slice as a secondary
    capture). The chooser must take soft/ although lung/ claims thinner slices."""
    import pydicom

    complete_series(source, out / "soft")
    for path in complete_series(source, out / "lung", series="lung"):
        ds = pydicom.dcmread(path)
        ds.ConvolutionKernel, ds.SliceThickness, ds.SeriesDescription = ["Bl57d", "3"], "1", "Lung 1.0"
        ds.save_as(path)
    scout = complete_series(source, out / "scout", series="scout")
    for extra in scout[1:]:
        extra.unlink()
    ds = pydicom.dcmread(scout[0])
    ds.ImageType, ds.SeriesDescription = ["ORIGINAL", "PRIMARY", "LOCALIZER"], "Topogram 0.6"
    ds.save_as(scout[0])
    capture = complete_series(source, out / "capture", series="capture")
    for extra in capture[1:]:
        extra.unlink()
    ds = pydicom.dcmread(capture[0])
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
    ds.SeriesDescription = "Dose report"
    ds.save_as(capture[0])
    return out
