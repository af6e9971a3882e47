"""One study from the PACS through the pipeline and back as DICOM.

    retrieve the study (C-GET / WADO-RS) into OUT/study/<study UID>/ (kept beside the results)
      -> the CT series to score (inputs.dicom_series) and its segmentation (given, or TotalSegmentator)
      -> pipeline.analyze -> OUT/organs_seg.dcm, OUT/findings_sr.dcm (+ CSV)   all or nothing
      -> store the SEG, then the SR (C-STORE / STOW-RS)                        SR only after its SEG

Everything that can be checked before the network and the model is checked first (outputs,
names, settings); a failure leaves no output file, and a PACS failure names what was stored
before it. ``store=False`` stops after writing the files (``totalfm pacs store`` sends them
later: the files keep their UIDs, so sending again does not duplicate them).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..progress import sub_progress
from . import transport


@dataclass
class RoundTrip:
    study_uid: str
    study_folder: Path
    series_note: str                 # which series was scored and why
    written: list[Path]
    stored: list[Path] = field(default_factory=list)
    result: object = None            # pipeline.CaseResult


def analyze_study(settings, study_uid: str, out, model_loader, *, seg=None, organs=None, findings=None,
                  csv: bool = True, store: bool = True, marks=None, progress=None, log=None) -> RoundTrip:
    """Retrieve, score and (``store``) send back one study; ``model_loader()`` gives the model
    once the study is read (so a bad study costs no model load)."""
    from ..outputs import export
    from ..outputs.destinations import Destinations
    from ..outputs.dicom_export import check_dicom_source, dicom_destinations, dicom_writers
    from ..pipeline import analyze, check_selection, open_case

    progress = progress or (lambda fraction, message: None)
    log = log or (lambda text: None)
    out = Path(out).expanduser()
    csv_path = out / "scores.csv"
    dicom_destinations(out).check()
    if csv:
        Destinations([csv_path]).check()
    check_selection(organs, findings)
    pacs = transport(settings)
    study_folder = out / "study" / study_uid
    log(f"retrieving study {study_uid} from {settings.describe()} ...")
    files = pacs.retrieve_study(settings, study_uid, study_folder, progress=sub_progress(progress, 0.0, 0.3))
    log(f"received {len(files)} instances into {study_folder}")
    case = open_case(study_folder, seg, log=log)
    source = check_dicom_source(case.ct)
    note = case.ct.meta.get("note") or f"scored series {case.ct.meta.get('series_uid', '')}"
    log(note)
    model = model_loader()
    result = analyze(model, case, organs=organs, findings=findings, case_id=study_uid,
                     progress=sub_progress(progress, 0.3, 0.9))
    writers = dicom_writers(result, case, out, marks=marks, source=source)
    if csv:
        writers[csv_path] = lambda tmp: export.write_csv(result.rows, tmp)
    written = Destinations(writers).write(writers)
    trip = RoundTrip(study_uid, study_folder, note, written, result=result)
    if store:
        dicom = [p for p in written if p.suffix == ".dcm"]  # SEG first, then the SR
        trip.stored = pacs.store_files(settings, dicom, progress=sub_progress(progress, 0.9, 1.0))
    progress(1.0, "done")
    return trip
