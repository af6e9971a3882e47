"""What the PACS transports (``dimse``, ``dicomweb``) share: the files they send, the folder
they receive into, the ``Study`` a search lists, and how an outcome is said in a message."""
from __future__ import annotations

import os
import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Study:
    """A study as the PACS lists it (no patient name: it is not needed to pick a study)."""

    study_uid: str
    patient_id: str
    study_date: str
    description: str
    modalities: str
    series: str
    instances: str
    accession: str


def sent_note(stored: list[Path]) -> str:
    """"; stored before it: a.dcm" (or that nothing was)."""
    return f"; stored before it: {', '.join(p.name for p in stored)}" if stored else "; nothing was stored"


def not_sent_note(rest) -> str:
    """"; not sent: b.dcm" for the (path, dataset) pairs after a failure."""
    return f"; not sent: {', '.join(p.name for p, _ in rest)}" if rest else ""


SR_MODALITY = "SR"


def read_outgoing(files) -> list[tuple[Path, object]]:
    """(path, pydicom Dataset) of each file to send, in the order given but with every SR after
    every other object (an SR refers to its SEG: it must never arrive without it); InputError
    for a file that is no readable DICOM file (before anything is sent)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    from ..errors import InputError

    out = []
    for f in files:
        try:
            out.append((Path(f), pydicom.dcmread(f)))
        except (InvalidDicomError, OSError) as e:
            raise InputError(f, f"cannot be sent: not a readable DICOM file ({type(e).__name__})") from None
    return sorted(out, key=lambda pair: str(pair[1].get("Modality", "")) == SR_MODALITY)


class Incoming:
    """Received instances go to a hidden folder inside ``folder``; ``finish()`` moves them into
    ``folder`` (named by SOP Instance UID) once all arrived; the hidden folder is always removed."""

    def __init__(self, folder):
        self.folder = Path(folder).expanduser()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.hidden = self.folder / f".incoming-{secrets.token_hex(4)}"
        self.hidden.mkdir()
        self.names: list[str] = []

    def save(self, ds) -> None:
        name = f"{ds.SOPInstanceUID}.dcm"
        ds.save_as(self.hidden / name, enforce_file_format=True)
        self.names.append(name)

    def finish(self) -> list[Path]:
        paths = []
        for name in self.names:
            os.replace(self.hidden / name, self.folder / name)
            paths.append(self.folder / name)
        return paths

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.hidden, ignore_errors=True)
