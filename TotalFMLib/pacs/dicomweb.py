"""The PACS over DICOMweb (dicomweb-client): QIDO-RS, WADO-RS, STOW-RS, with HTTP basic
authentication when a user is set. Same functions and promises as ``dimse``: one
``PacsError`` line per failure (refused connection, timeout, refused credentials, a refused
object with the HTTP status), a retrieval put in place only when whole, a store that sends
one object per request in the order given, stops at the first refusal and checks afterwards
that the PACS lists what it accepted. Neither the password nor the user name is printed.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

from ..errors import PacsError
from ..outputs.dicom_source import INSTALL_HINT
from .transfer import Incoming, Study, not_sent_note, read_outgoing, sent_note
from .settings import PacsSettings


def client(settings: PacsSettings):
    try:
        from dicomweb_client.api import DICOMwebClient
        from dicomweb_client.session_utils import create_session, create_session_from_user_pass
    except ImportError:
        raise PacsError(f"DICOMweb needs dicomweb-client: {INSTALL_HINT}") from None
    logging.getLogger("dicomweb_client").setLevel(logging.CRITICAL)  # its errors become our one line
    session = (create_session_from_user_pass(settings.username, settings.password) if settings.username
               else create_session())
    web = DICOMwebClient(settings.dicomweb_url, session=session, timeout=settings.timeout)
    web.set_http_retry_params(retry=False)  # "within the timeout" means once, not five times with back-off
    return web


@contextmanager
def _errors(settings: PacsSettings, doing: str, after: str = ""):
    """Turns what requests raises into one PacsError line (no credentials, no URL user part)."""
    import requests

    where = f"PACS {settings.describe()}"
    try:
        yield
    except requests.exceptions.ConnectTimeout:
        raise PacsError(f"{where} did not accept a connection within {settings.timeout:g} s{after}") from None
    except requests.exceptions.ReadTimeout:
        raise PacsError(f"{where} did not answer within {settings.timeout:g} s while {doing}{after}") from None
    except requests.exceptions.ConnectionError as e:
        text = str(e).lower()
        if "timed out" in text:  # a request body the server stopped reading
            raise PacsError(f"{where} did not answer within {settings.timeout:g} s while {doing}{after}") from None
        what = "refused the connection (not running, or another port?)" if "refused" in text else "cannot be reached"
        raise PacsError(f"{where} {what}{after}") from None
    except requests.exceptions.HTTPError as e:
        code = e.response.status_code if e.response is not None else 0
        reason = (e.response.reason if e.response is not None else "") or ""
        if code in (401, 403):
            raise PacsError(f"{where} refused the credentials (HTTP {code} {reason}) while {doing}{after}") from None
        raise PacsError(f"{where} refused {doing} (HTTP {code} {reason}){after}") from None


def find_studies(settings: PacsSettings, patient_id: str = "", study_date: str = "", accession: str = "",
                 study_uid: str = "", modality: str = "") -> list[Study]:
    """QIDO-RS study search; empty filters match everything."""
    from pydicom.dataset import Dataset

    filters = {k: v for k, v in {"PatientID": patient_id, "StudyDate": study_date, "AccessionNumber": accession,
                                 "StudyInstanceUID": study_uid, "ModalitiesInStudy": modality}.items() if v}
    fields = ["StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"]
    with _errors(settings, "the study search"):
        found = client(settings).search_for_studies(search_filters=filters, fields=fields)
    studies = []
    for item in found:
        ds = Dataset.from_json(item)
        get = lambda key: str(ds.get(key, "") or "")  # noqa: E731
        mods = ds.get("ModalitiesInStudy") or ""
        studies.append(Study(get("StudyInstanceUID"), get("PatientID"), get("StudyDate"), get("StudyDescription"),
                             mods if isinstance(mods, str) else "\\".join(mods), get("NumberOfStudyRelatedSeries"),
                             get("NumberOfStudyRelatedInstances"), get("AccessionNumber")))
    return studies


def retrieve_study(settings: PacsSettings, study_uid: str, folder, progress=None) -> list[Path]:
    """WADO-RS of a whole study into ``folder`` (as ``dimse.retrieve_study``)."""
    web = client(settings)
    with _errors(settings, f"counting the instances of study {study_uid}"):
        listed = web.search_for_instances(study_instance_uid=study_uid, fields=["SOPInstanceUID"])
    if not listed:
        raise PacsError(f"PACS {settings.describe()} has no study {study_uid}")
    with Incoming(folder) as incoming:
        with _errors(settings, f"sending study {study_uid}"):
            # as stored ("transfer-syntax=*"): a PACS that cannot transcode would otherwise skip images
            for ds in web.iter_study(study_uid, media_types=(("application/dicom", "*"),)):
                incoming.save(ds)
                if progress is not None:
                    progress(len(incoming.names) / len(listed), f"{len(incoming.names)} images received")
        if len(incoming.names) != len(listed):
            raise PacsError(f"PACS {settings.describe()} did not send study {study_uid} whole: "
                            f"{len(incoming.names)} of its {len(listed)} instances received")
        return incoming.finish()


def store_files(settings: PacsSettings, files, progress=None) -> list[Path]:
    """STOW-RS of ``files``, one request each in the order given (as ``dimse.store_files``)."""
    datasets = read_outgoing(files)
    web = client(settings)
    stored: list[Path] = []
    for i, (path, ds) in enumerate(datasets):
        after = sent_note(stored) + not_sent_note(datasets[i + 1:])
        with _errors(settings, f"storing {path.name}", after):
            reply = web.store_instances([ds])
        if reply is not None and reply.get("FailedSOPSequence"):
            reason = reply.FailedSOPSequence[0].get("FailureReason", "")
            raise PacsError(f"PACS {settings.describe()} rejected {path.name} ({ds.SOPClassUID.name}): failure "
                            f"reason {reason}" + after)
        stored.append(path)
        if progress is not None:
            progress(len(stored) / len(datasets), f"stored {path.name}")
    with _errors(settings, "listing what was stored"):
        lost = [p.name for p, ds in datasets
                if not web.search_for_instances(study_instance_uid=str(ds.StudyInstanceUID),
                                                search_filters={"SOPInstanceUID": str(ds.SOPInstanceUID)})]
    if lost:
        raise PacsError(f"PACS {settings.describe()} answered success for {', '.join(lost)} but does not hold "
                        f"{'it' if len(lost) == 1 else 'them'} afterwards (discarded by a filter or a storage rule?)")
    return stored
