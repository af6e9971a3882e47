"""DICOM Segmentation (SEG) of the organs that were scored, on the source CT series.

One binary segment per organ, numbered in the order given, labelled with the organ's
display name and coded with TotalSegmentator's SNOMED codes (category, type, type modifier
for laterality, anatomic region) and its colour (``vocabulary.catalogue``). Frames follow the
source slices and reference them, so a viewer lays the segments on the CT it came from.
Built with highdicom (``pip install "TotalFMLib[dicom]"``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError

MANUFACTURER = "TotalFMSlicer"
INSTALL_HINT = 'pip install "TotalFMLib[dicom]" (highdicom, pynetdicom)'


def require_highdicom():
    """highdicom, or a TotalFMError with the install hint."""
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


def _concept(code):
    from highdicom.sr import CodedConcept

    return CodedConcept(code.value, code.scheme, code.meaning)


def segment_description(number: int, organ, algorithm, tracking_uid: str):
    """The SEG segment of one catalogue organ (codes and colour from TotalSegmentator's table)."""
    from highdicom.color import CIELabColor
    from highdicom.seg import SegmentAlgorithmTypeValues, SegmentDescription
    from highdicom.sr import CodedConcept

    regions = [_concept(organ.snomed_region)] if organ.snomed_region.value else None
    desc = SegmentDescription(
        segment_number=number, segment_label=organ.display_name[:64],
        segmented_property_category=_concept(organ.snomed_category),
        segmented_property_type=_concept(organ.snomed_type),
        algorithm_type=SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
        tracking_id=organ.name, tracking_uid=tracking_uid, anatomic_regions=regions,
        display_color=CIELabColor.from_rgb(*organ.color))
    if organ.snomed_type_modifier.value:
        desc.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            CodedConcept(organ.snomed_type_modifier.value, organ.snomed_type_modifier.scheme,
                         organ.snomed_type_modifier.meaning)]
    return desc


def segmentation_algorithm():
    """Who made the organ masks: TotalSegmentator (its version where it is installed)."""
    from highdicom import AlgorithmIdentificationSequence
    from highdicom.sr import CodedConcept

    try:
        from importlib.metadata import version

        ts_version = version("TotalSegmentator")
    except Exception:
        ts_version = "unknown"
    return AlgorithmIdentificationSequence(
        name="TotalSegmentator", version=ts_version,
        family=CodedConcept("123109", "DCM", "Artificial Intelligence"))


def organ_seg(case, organs: list[str], source: SourceSeries, *, series_uid: str, sop_uid: str,
              software_version: str, device_serial: str, series_number: int = 901):
    """The highdicom ``Segmentation`` of ``organs`` (structure names; segment i+1 is organs[i])."""
    require_highdicom()
    from highdicom.seg import Segmentation, SegmentationTypeValues

    from ..vocabulary import catalogue

    check_same_slices(case.ct, source)
    chosen = [catalogue.organ(o) for o in organs]
    lookup = np.zeros(int(case.seg.array.max()) + 1, dtype=np.uint16)
    for number, organ in enumerate(chosen, start=1):
        if organ.label_id < lookup.size:
            lookup[organ.label_id] = number
    labels = lookup[case.seg.array.astype(np.int64)]
    algorithm = segmentation_algorithm()
    from pydicom.uid import generate_uid

    descriptions = [segment_description(n, o, algorithm, generate_uid(entropy_srcs=[sop_uid, o.name]))
                    for n, o in enumerate(chosen, start=1)]
    return Segmentation(
        source_images=source.headers, pixel_array=labels, segmentation_type=SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_uid, series_number=series_number, sop_instance_uid=sop_uid, instance_number=1,
        manufacturer=MANUFACTURER, manufacturer_model_name="TotalFM organ segmentation export",
        software_versions=software_version, device_serial_number=device_serial[:64],
        series_description="TotalFM organs (TotalSegmentator)", content_label="ORGANS",
        content_description="Organs scored by TotalFM", content_creator_name="TotalFM^Export")


def write(dataset, path: Path) -> None:
    """Save a highdicom object as a DICOM file (Part 10, with file meta)."""
    dataset.save_as(str(path), enforce_file_format=True)
