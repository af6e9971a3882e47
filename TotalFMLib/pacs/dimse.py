"""The PACS over DICOM networking (DIMSE, pynetdicom): C-FIND, C-GET, C-STORE.

    find_studies(settings, patient_id=..., study_date=...)  -> [Study]
    retrieve_study(settings, study_uid, folder)              -> files written (C-GET)
    store_files(settings, [seg, sr])                         -> stored, in order (C-STORE)

Every failure is one ``PacsError`` line that says which: the PACS refused the connection,
did not answer within the timeout, rejected the association (AE titles), or refused a
request or an object (with its DICOM status). A retrieval is written to a hidden folder and
moved into place only when every image arrived; a store sends the files in the order given
and stops at the first refusal, after checking that the PACS accepts every object's kind, so
an SR is never sent when its SEG was not stored.
"""
from __future__ import annotations

import logging
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from ..errors import PacsError
from ..outputs.dicom_source import INSTALL_HINT
from .transfer import Incoming, Study, not_sent_note, read_outgoing, sent_note
from .settings import PacsSettings

STORAGE_CLASSES = (  # what a retrieved study may hold that we keep
    "CTImageStorage", "EnhancedCTImageStorage", "SecondaryCaptureImageStorage", "SegmentationStorage",
    "Comprehensive3DSRStorage", "EnhancedSRStorage", "ComprehensiveSRStorage", "XRayRadiationDoseSRStorage")


def _pynetdicom():
    try:
        import pynetdicom
    except ImportError:
        raise PacsError(f"talking to a PACS needs pynetdicom: {INSTALL_HINT}") from None
    logging.getLogger("pynetdicom").setLevel(logging.CRITICAL)  # its errors become our one line
    return pynetdicom


def transfer_syntax_groups():
    """The transfer syntaxes offered for received images, one presentation context each, so the
    PACS can send images as it stores them (uncompressed, JPEG 2000, JPEG lossless, RLE, JPEG-LS)."""
    from pydicom import uid

    return [[uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian], [uid.JPEG2000Lossless], [uid.JPEG2000],
            [uid.JPEGLosslessSV1], [uid.JPEGLossless], [uid.RLELossless], [uid.JPEGLSLossless]]


def _reach(settings: PacsSettings) -> None:
    """PacsError unless a TCP connection to the PACS opens within the timeout."""
    try:
        socket.create_connection((settings.host, settings.port), timeout=settings.timeout).close()
    except ConnectionRefusedError:
        raise PacsError(f"PACS {settings.describe()} refused the connection (not running, or another port?)") from None
    except (socket.timeout, TimeoutError):
        raise PacsError(f"PACS {settings.describe()} did not accept a connection within {settings.timeout:g} s") from None
    except OSError as e:
        raise PacsError(f"PACS {settings.describe()} cannot be reached: {e.strerror or type(e).__name__}") from None


@contextmanager
def association(settings: PacsSettings, contexts: list[tuple[str, list[str]]], roles=(), handlers=()):
    """An established association with the PACS, released afterwards; ``contexts``: (abstract
    syntax, transfer syntaxes) pairs."""
    pynetdicom = _pynetdicom()
    _reach(settings)
    ae = pynetdicom.AE(ae_title=settings.calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = ae.connection_timeout = settings.timeout
    for abstract, syntaxes in contexts:
        ae.add_requested_context(abstract, syntaxes)
    assoc = ae.associate(settings.host, settings.port, ae_title=settings.called_aet, ext_neg=list(roles) or None,
                         evt_handlers=list(handlers) or None)
    if not assoc.is_established:
        if assoc.is_rejected:
            raise PacsError(f"PACS {settings.describe()} rejected the association from {settings.calling_aet} "
                            f"(is that AE title known to the PACS, and {settings.called_aet} its own?)")
        raise PacsError(f"PACS {settings.describe()} did not answer the association request within "
                        f"{settings.timeout:g} s (or closed it)")
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def _status_text(status) -> str:
    from pynetdicom.status import code_to_status

    code = int(status.Status)
    try:
        meaning = code_to_status(code)[1]
    except (KeyError, ValueError, TypeError):
        meaning = ""
    comment = str(status.get("ErrorComment", "") or "")
    return f"status 0x{code:04X}" + (f" ({meaning.strip()})" if meaning else "") + (f": {comment}" if comment else "")


def _no_reply(settings: PacsSettings, assoc, started: float, doing: str) -> PacsError:
    """The error when a request got no reply: timed out, or the PACS aborted the association."""
    import time

    waited = time.monotonic() - started
    if assoc.is_aborted and waited < 0.9 * settings.timeout:
        return PacsError(f"PACS {settings.describe()} aborted the association while {doing} (refused the request)")
    return PacsError(f"PACS {settings.describe()} did not answer within {settings.timeout:g} s while {doing}")


def find_studies(settings: PacsSettings, patient_id: str = "", study_date: str = "", accession: str = "",
                 study_uid: str = "", modality: str = "") -> list[Study]:
    """C-FIND at study level (Study Root); empty filters match everything."""
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

    query = Dataset()
    query.QueryRetrieveLevel = "STUDY"
    query.StudyInstanceUID, query.PatientID, query.StudyDate = study_uid, patient_id, study_date
    query.AccessionNumber, query.ModalitiesInStudy, query.StudyDescription = accession, modality, ""
    query.NumberOfStudyRelatedSeries = query.NumberOfStudyRelatedInstances = ""
    found = []
    with association(settings, [(FIND, _plain())]) as assoc:
        started = time.monotonic()
        for status, identifier in assoc.send_c_find(query, FIND):
            if not status:
                raise _no_reply(settings, assoc, started, "searching for studies")
            if status.Status in (0xFF00, 0xFF01) and identifier is not None:
                get = lambda key: str(identifier.get(key, "") or "")  # noqa: E731
                mods = identifier.get("ModalitiesInStudy") or ""
                found.append(Study(get("StudyInstanceUID"), get("PatientID"), get("StudyDate"),
                                   get("StudyDescription"), mods if isinstance(mods, str) else "\\".join(mods),
                                   get("NumberOfStudyRelatedSeries"), get("NumberOfStudyRelatedInstances"),
                                   get("AccessionNumber")))
            elif status.Status != 0x0000:
                raise PacsError(f"PACS {settings.describe()} refused the study search: {_status_text(status)}")
    return found


def _plain():
    from pydicom import uid

    return [uid.ExplicitVRLittleEndian, uid.ImplicitVRLittleEndian]


def retrieve_study(settings: PacsSettings, study_uid: str, folder, progress=None) -> list[Path]:
    """C-GET of a whole study into ``folder`` (created; one file per instance, named by its SOP
    Instance UID). Nothing is left in ``folder`` unless every instance arrived."""
    from pynetdicom import build_role, evt
    from pynetdicom import sop_class as sop
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET
    from pydicom.dataset import Dataset

    _pynetdicom()
    incoming = Incoming(folder)

    def on_store(event):
        ds = event.dataset
        ds.file_meta = event.file_meta
        try:
            incoming.save(ds)
        except OSError:
            return 0xA700  # out of resources: the PACS counts it as failed
        return 0x0000

    classes = [getattr(sop, name) for name in STORAGE_CLASSES]
    contexts = [(GET, _plain())] + [(c, group) for c in classes for group in transfer_syntax_groups()]
    roles = [build_role(c, scp_role=True) for c in classes]
    query = Dataset()
    query.QueryRetrieveLevel, query.StudyInstanceUID = "STUDY", study_uid
    with incoming:
        received = incoming.names
        with association(settings, contexts, roles, [(evt.EVT_C_STORE, on_store)]) as assoc:
            final, started = None, time.monotonic()
            for status, _ in assoc.send_c_get(query, GET):
                if not status:
                    raise _no_reply(settings, assoc, started,
                                    f"sending study {study_uid} ({len(received)} images received)")
                if status.Status in (0xFF00, 0xFF01):
                    remaining = int(status.get("NumberOfRemainingSuboperations", 0) or 0)
                    if progress is not None:
                        progress(len(received) / max(1, len(received) + remaining),
                                 f"{len(received)} images received")
                    continue
                final = status
        failed = int(final.get("NumberOfFailedSuboperations", 0) or 0) if final is not None else 0
        if final is None or final.Status not in (0x0000, 0xB000) or failed:
            why = _status_text(final) if final is not None else "no final status"
            raise PacsError(f"PACS {settings.describe()} did not send study {study_uid} whole: {why}; "
                            f"{len(received)} images received, {failed} failed")
        if not received:
            raise PacsError(f"PACS {settings.describe()} has no study {study_uid} (or sent none of its images)")
        return incoming.finish()


def store_files(settings: PacsSettings, files, progress=None) -> list[Path]:
    """C-STORE of ``files`` in order over one association; PacsError at the first refusal (the
    files after it are not sent). Every file's kind is checked to be accepted before any is sent,
    and afterwards every file is looked up (C-FIND, image level): a PACS that answers success
    but keeps nothing (a filter) is an error too."""
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

    import pydicom

    _pynetdicom()
    datasets = read_outgoing(files)
    contexts = sorted({(str(ds.SOPClassUID), str(ds.file_meta.TransferSyntaxUID)) for _, ds in datasets})
    stored: list[Path] = []
    with association(settings, [(sop, [ts]) for sop, ts in contexts] + [(FIND, _plain())]) as assoc:
        accepted = {(str(c.abstract_syntax), str(c.transfer_syntax[0])) for c in assoc.accepted_contexts}
        refused = [sop for sop, ts in contexts if (sop, ts) not in accepted]
        if refused:
            names = ", ".join(sorted({pydicom.uid.UID(s).name for s in refused}))
            raise PacsError(f"PACS {settings.describe()} does not accept {names} objects; nothing was sent")
        for i, (path, ds) in enumerate(datasets):
            started = time.monotonic()
            status = assoc.send_c_store(ds)
            if not status:
                raise _no_reply(settings, assoc, started, f"storing {path.name}" + sent_note(stored) +
                                not_sent_note(datasets[i + 1:]))
            if status.Status != 0x0000 and int(status.Status) >> 12 != 0xB:  # success or warning
                raise PacsError(f"PACS {settings.describe()} rejected {path.name} ({ds.SOPClassUID.name}): "
                                f"{_status_text(status)}" + sent_note(stored) + not_sent_note(datasets[i + 1:]))
            stored.append(path)
            if progress is not None:
                progress(len(stored) / len(datasets), f"stored {path.name}")
        kept = [path for path, ds in datasets if _holds(assoc, ds)]
    lost = [path.name for path in stored if path not in kept]
    if lost:
        raise PacsError(f"PACS {settings.describe()} answered success for {', '.join(lost)} but does not hold "
                        f"{'it' if len(lost) == 1 else 'them'} afterwards (discarded by a filter or a storage "
                        f"rule?)" + "".join(f"; it holds {p.name}" for p in stored if p in kept))
    return stored


def _holds(assoc, ds) -> bool:
    """Whether the PACS lists the instance (C-FIND at image level by its UIDs)."""
    from pydicom.dataset import Dataset
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

    query = Dataset()
    query.QueryRetrieveLevel = "IMAGE"
    query.StudyInstanceUID, query.SeriesInstanceUID = ds.StudyInstanceUID, ds.SeriesInstanceUID
    query.SOPInstanceUID = ds.SOPInstanceUID
    replies = list(assoc.send_c_find(query, FIND))  # read to the final reply before the next request
    return any(status and status.Status in (0xFF00, 0xFF01) and found is not None for status, found in replies)
