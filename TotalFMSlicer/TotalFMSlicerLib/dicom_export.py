"""The shown results as DICOM: the organ SEG and the findings SR (``TotalFMLib.outputs.dicom_export``)
of a CT loaded from Slicer's DICOM database, with the reviewer's marks.

Slicer's DICOM plugins mark a loaded series with the node attribute ``DICOM.instanceUIDs``
(its SOP Instance UIDs, space-separated); the database gives each one's file. The SEG and SR
reference those images, so a CT loaded from a NIfTI or NRRD file cannot be exported this way
(one line says so). Scores come from the segment tags (``score_store``), marks from the table.
"""
from __future__ import annotations

from TotalFMLib.errors import InputError

UIDS_ATTRIBUTE = "DICOM.instanceUIDs"


def source_files(ct_node, database) -> list[str]:
    """The files of the DICOM series the volume node was loaded from."""
    uids = (ct_node.GetAttribute(UIDS_ATTRIBUTE) or "").split()
    if not uids or database is None:
        raise InputError(ct_node.GetName(), "was not loaded from Slicer's DICOM database; DICOM export needs the "
                                            "source series (load the CT with the DICOM module)")
    files = [database.fileForInstance(uid) for uid in uids]
    missing = sum(1 for f in files if not f)
    if missing:
        raise InputError(ct_node.GetName(), f"{missing} of its {len(uids)} DICOM images are not in the DICOM "
                                            f"database any more; DICOM export needs the whole source series")
    return files


def export_dicom(ct_node, segmentation_node, table_node, folder, database):
    """Write organs_seg.dcm and findings_sr.dcm into ``folder`` (both or neither); the
    ``DicomExport`` (paths, organs)."""
    from TotalFMLib.inputs.case import Case
    from TotalFMLib.outputs.dicom_export import write_dicom
    from TotalFMLib.pipeline import CaseResult

    from . import geometry, score_store, scores_table, segments

    files = source_files(ct_node, database)
    rows = score_store.scored_rows(segmentation_node)
    if not rows:
        raise InputError(segmentation_node.GetName(), "holds no TotalFM scores; press Apply first")
    ct = geometry.volume_from_volume_node(ct_node)
    ct.meta.update({"format": "DICOM", "files": files})
    labels = segments.labelmap_from_segmentation(segmentation_node, ct_node)
    result = CaseResult(rows[0].case_id, {}, rows, rows[0].model_id, rows[0].model_checksum)
    marks = scores_table.review_marks(table_node) if table_node is not None else {}
    return write_dicom(result, Case(ct, labels), folder, marks=marks)
