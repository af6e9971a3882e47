"""A scored case as DICOM: the organ SEG and the findings SR, written together or not at all.

    check_dicom_source(ct)          before heavy work: the CT came from a DICOM series with UIDs
    write_dicom(result, case, DIR)  -> DIR/organs_seg.dcm, DIR/findings_sr.dcm

The SR references the SEG's segments, so both are built first and then put in place as a
pair (``destinations.Destinations``): a failure leaves neither. UIDs are new for every
export; the files keep them, so sending the same files again (``totalfm pacs store``)
replaces rather than duplicates them in a PACS.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from . import dicom_seg, dicom_source, dicom_sr
from .destinations import Destinations

SEG_NAME, SR_NAME = "organs_seg.dcm", "findings_sr.dcm"


@dataclass
class DicomExport:
    seg: Path
    sr: Path
    organs: list[str]      # segment i+1 of the SEG

    @property
    def paths(self) -> list[Path]:
        return [self.seg, self.sr]


def dicom_destinations(folder) -> Destinations:
    """The two output files in ``folder`` (SEG, SR), to check before work and to write."""
    folder = Path(folder).expanduser()
    return Destinations([folder / SEG_NAME, folder / SR_NAME])


def check_dicom_source(ct) -> dicom_source.SourceSeries:
    """The source series, or InputError when DICOM output cannot reference it (headers only;
    pass it on to ``dicom_writers`` so they are not read again)."""
    dicom_source.require_highdicom()
    return dicom_source.source_series(ct)


def _save(dataset, path: Path) -> None:
    """A highdicom object as a DICOM file (Part 10, with file meta)."""
    dataset.save_as(str(path), enforce_file_format=True)


def scored_organs(result) -> list[str]:
    """The organs of a result in catalogue (label) order."""
    from ..vocabulary import catalogue

    return sorted({r.organ for r in result.rows}, key=lambda o: catalogue.organ(o).label_id)


def dicom_writers(result, case, folder, marks: dict[str, str] | None = None, source=None) -> dict:
    """{path: writer(tmp)} of the SEG and SR of a ``pipeline.CaseResult`` on its ``Case``: both
    objects are built here (so a failure to build one leaves no file), written by the caller
    together with its other outputs (``Destinations.write``). ``source``: the case's
    ``check_dicom_source`` when the caller checked it already."""
    from pydicom.uid import generate_uid

    from .. import __version__

    source = source or check_dicom_source(case.ct)
    organs = scored_organs(result)
    seg = dicom_seg.organ_seg(case, organs, source, series_uid=generate_uid(), sop_uid=generate_uid(),
                              software_version=__version__, device_serial=result.model_checksum[:16])
    sr = dicom_sr.findings_sr(result, seg, organs, source, series_uid=generate_uid(), sop_uid=generate_uid(),
                              marks=marks)
    seg_path, sr_path = dicom_destinations(folder).check().paths
    return {seg_path: lambda tmp: _save(seg, tmp), sr_path: lambda tmp: _save(sr, tmp)}


def write_dicom(result, case, folder, marks: dict[str, str] | None = None) -> DicomExport:
    """SEG + SR of a ``pipeline.CaseResult`` on its ``Case`` into ``folder``, as a pair."""
    writers = dicom_writers(result, case, folder, marks)
    seg_path, sr_path = Destinations(writers).write(writers)
    return DicomExport(seg_path, sr_path, scored_organs(result))
