"""DICOM Comprehensive 3D SR of the findings: a TID 1500 Measurement Report.

One volumetric ROI group (TID 1411) per organ, each referencing its segment of the SEG
(``dicom_seg``) and the source series, with the organ as finding site, and per finding:

- a measurement: the finding's score in [0, 1] (UCUM ``{probability}``), TotalFM as the
  algorithm (name, model id as version, checksum as parameter);
- a qualitative evaluation: the finding Present (score at or over its threshold) or Absent
  (SNOMED 52101004 / 2667000);
- the reviewer's mark (agree, disagree, unsure) when the organ was reviewed.

Findings and marks have no standard code, so they are coded in the private scheme
``99TOTALFM`` (declared in the SR's Coding Scheme Identification): code meaning = the
finding's name as the CSV writes it (``any lesion``, ``hepatic steatosis``), code value =
"F" and 10 hex digits of its SHA-1 (a Code Value holds 16 characters; longer values would
need Long Code Value, which readers, highdicom's own included, do not all parse).
"""
from __future__ import annotations

from collections import defaultdict

from ..vocabulary import catalogue
from .dicom_source import MANUFACTURER, SourceSeries, require_highdicom

SCHEME = "99TOTALFM"
SCHEME_NAME = "TotalFM findings and review marks"
SCORE_UNIT = ("{probability}", "UCUM", "probability")
PRESENT, ABSENT = ("52101004", "SCT", "Present"), ("2667000", "SCT", "Absent")
REVIEW = ("review", SCHEME, "Reviewer assessment of the AI result")
MARKS = {"agree": "Reviewer agrees", "disagree": "Reviewer disagrees", "unsure": "Reviewer unsure"}


def _cc(value: str, scheme: str, meaning: str):
    from highdicom.sr import CodedConcept

    return CodedConcept(value, scheme, meaning[:64])


def finding_code(finding: str) -> str:
    """The private code value of a finding: stable, at most 16 characters."""
    import hashlib

    return "F" + hashlib.sha1(finding.encode("utf-8")).hexdigest()[:10]


def finding_concept(finding: str):
    """The private code of a finding (meaning: its catalogue name)."""
    return _cc(finding_code(finding), SCHEME, finding)


def algorithm(model_id: str, checksum: str):
    from highdicom.sr import AlgorithmIdentification

    return AlgorithmIdentification(name="TotalFM", version=model_id[:64], parameters=[f"sha256:{checksum}"])


def organ_group(organ_name: str, rows, segment_number: int, seg, source: SourceSeries, algo, mark: str | None):
    """TID 1411 group of one organ: its scores, flags and mark, referencing its SEG segment."""
    from highdicom.sr import (FindingSite, Measurement, QualitativeEvaluation, ReferencedSegment,
                              SourceSeriesForSegmentation, TrackingIdentifier,
                              VolumetricROIMeasurementsAndQualitativeEvaluations)
    from pydicom.uid import generate_uid

    organ = catalogue.organ(organ_name)
    site_type = _cc(organ.snomed_type.value, organ.snomed_type.scheme, organ.snomed_type.meaning)
    laterality = None
    if organ.snomed_type_modifier.value:
        m = organ.snomed_type_modifier
        laterality = _cc(m.value, m.scheme, m.meaning)
    measurements, evaluations = [], []
    for r in rows:
        concept = finding_concept(r.finding)
        measurements.append(Measurement(name=concept, value=float(r.score), unit=_cc(*SCORE_UNIT), algorithm_id=algo))
        evaluations.append(QualitativeEvaluation(concept, _cc(*(PRESENT if r.flagged else ABSENT))))
    if mark:
        evaluations.append(QualitativeEvaluation(_cc(*REVIEW), _cc(mark, SCHEME, MARKS[mark])))
    return VolumetricROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=generate_uid(entropy_srcs=[seg.SOPInstanceUID, organ.name]),
                                               identifier=organ.display_name[:64]),
        referenced_segment=ReferencedSegment(sop_class_uid=seg.SOPClassUID, sop_instance_uid=seg.SOPInstanceUID,
                                             segment_number=segment_number,
                                             source_series=SourceSeriesForSegmentation(source.series_uid)),
        finding_type=site_type, algorithm_id=algo,
        finding_sites=[FindingSite(anatomic_location=site_type, laterality=laterality)],
        measurements=measurements, qualitative_evaluations=evaluations)


def findings_sr(result, seg, organs: list[str], source: SourceSeries, *, series_uid: str, sop_uid: str,
                marks: dict[str, str] | None = None, series_number: int = 902):
    """The highdicom ``Comprehensive3DSR`` of a ``pipeline.CaseResult`` (segment i+1 of ``seg``
    is organs[i]); ``marks``: {organ: "agree" | "disagree" | "unsure"}."""
    require_highdicom()
    from highdicom.sr import (Comprehensive3DSR, DeviceObserverIdentifyingAttributes, MeasurementReport,
                              ObservationContext, ObserverContext)
    from pydicom.dataset import Dataset
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    marks = marks or {}
    unknown = {m for m in marks.values() if m} - set(MARKS)
    if unknown:
        raise ValueError(f"review marks must be one of {', '.join(MARKS)}, not {', '.join(sorted(unknown))}")
    by_organ = defaultdict(list)
    for r in result.rows:
        by_organ[r.organ].append(r)
    algo = algorithm(result.model_id, result.model_checksum)
    groups = [organ_group(o, by_organ[o], n, seg, source, algo, marks.get(o))
              for n, o in enumerate(organs, start=1) if by_organ.get(o)]
    observer = ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=["TotalFM", result.model_checksum]), name="TotalFM",
            manufacturer_name=MANUFACTURER, model_name=result.model_id[:64]))
    report = MeasurementReport(
        observation_context=ObservationContext(observer_device_context=observer),
        procedure_reported=codes.LN.CTUnspecifiedBodyRegion, imaging_measurements=groups)
    sr = Comprehensive3DSR(
        evidence=list(source.headers) + [seg], content=report, series_instance_uid=series_uid,
        series_number=series_number, sop_instance_uid=sop_uid, instance_number=1, manufacturer=MANUFACTURER,
        is_complete=True, series_description="TotalFM findings")
    scheme = Dataset()
    scheme.CodingSchemeDesignator, scheme.CodingSchemeName = SCHEME, SCHEME_NAME
    scheme.CodingSchemeResponsibleOrganization = MANUFACTURER
    sr.CodingSchemeIdentificationSequence = [scheme]
    return sr
