"""DICOM Segmentation (SEG) of the organs that were scored, on the source CT series.

One binary segment per organ, numbered in the order given, labelled with the organ's
display name and coded with TotalSegmentator's SNOMED codes (category, type, type modifier
for laterality, anatomic region) and its colour (``vocabulary.catalogue``). Frames follow the
source slices and reference them, so a viewer lays the segments on the CT it came from.
Built with highdicom (``pip install "TotalFMLib[dicom]"``).
"""
from __future__ import annotations

import numpy as np

from .dicom_source import MANUFACTURER, SourceSeries, check_same_slices, require_highdicom

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
