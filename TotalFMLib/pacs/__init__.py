"""The PACS round trip: find a study, retrieve it, score it, store its DICOM SEG and SR back.

    settings.py   where the PACS is (options or a JSON config file; credentials never printed)
    dimse.py      DICOM networking (pynetdicom): C-FIND, C-GET, C-STORE
    dicomweb.py   the same over DICOMweb (dicomweb-client): QIDO-RS, WADO-RS, STOW-RS
    roundtrip.py  retrieve -> pipeline.analyze -> outputs.dicom_export -> store
    cli.py        ``totalfm pacs find | get | store | analyze``

``transport(settings)`` is the module that talks to a PACS as the settings ask (a DICOMweb
URL: DICOMweb, else DIMSE); both offer ``find_studies``, ``retrieve_study`` and ``store_files``.
"""
from __future__ import annotations


def transport(settings):
    """``dimse`` or ``dicomweb``, as ``settings.transport`` says."""
    if settings.transport == "dicomweb":
        from . import dicomweb

        return dicomweb
    from . import dimse

    return dimse
