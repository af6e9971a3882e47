"""Where the PACS is and who we are to it: from command-line options or a config file.

A config file is JSON (``--pacs-config FILE``, or the file named by ``$TOTALFM_PACS_CONFIG``)::

    {"host": "pacs.example.org", "port": 104, "called_aet": "ORTHANC", "calling_aet": "TOTALFM",
     "timeout": 30,
     "dicomweb_url": "https://pacs.example.org/dicom-web", "username": "reader", "password": "..."}

Options given on the command line win over the file. Nothing about a PACS is built in: the
host, the port (or the DICOMweb URL) and the called AE title must come from one of them.
The password may also come from ``$TOTALFM_PACS_PASSWORD`` so that it is not written in a
file or typed on a command line. ``describe()`` and every message name the PACS by its
address and AE title only: credentials are never printed.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..errors import InputError

CONFIG_ENV, PASSWORD_ENV = "TOTALFM_PACS_CONFIG", "TOTALFM_PACS_PASSWORD"
DEFAULT_CALLING_AET = "TOTALFM"
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class PacsSettings:
    host: str = ""
    port: int = 0
    called_aet: str = ""
    calling_aet: str = DEFAULT_CALLING_AET
    timeout: float = DEFAULT_TIMEOUT_S          # seconds: connect, association, each reply
    dicomweb_url: str = ""
    username: str = ""
    password: str = field(default="", repr=False)  # never printed (repr, describe, messages)

    @property
    def transport(self) -> str:
        """"dicomweb" when a DICOMweb URL is set, else "dimse"."""
        return "dicomweb" if self.dicomweb_url else "dimse"

    def describe(self) -> str:
        """The PACS in a message: address and AE titles or URL, no credentials."""
        if self.transport == "dicomweb":
            from urllib.parse import urlsplit

            parts = urlsplit(self.dicomweb_url)
            host = parts.hostname or ""
            netloc = host + (f":{parts.port}" if parts.port else "")
            return f"DICOMweb {parts.scheme}://{netloc}{parts.path}"
        return f"{self.called_aet}@{self.host}:{self.port}"


def _checked(values: dict, where: str) -> PacsSettings:
    known = {f.name for f in fields(PacsSettings)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(where, f"unknown PACS setting{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
                                f"known: {', '.join(sorted(known))}")
    try:
        s = PacsSettings(**{**values, "port": int(values.get("port") or 0),
                            "timeout": float(values.get("timeout") or DEFAULT_TIMEOUT_S)})
    except (TypeError, ValueError) as e:
        raise InputError(where, f"bad PACS setting: {e}") from None
    if s.transport == "dimse":
        missing = [k for k in ("host", "port", "called_aet") if not getattr(s, k)]
        if missing:
            raise InputError(where, f"no PACS {', '.join(missing)} given: pass --pacs-host, --pacs-port and "
                                    f"--pacs-aet (or --dicomweb-url), or a config file with --pacs-config")
        if not 0 < s.port < 65536:
            raise InputError(where, f"PACS port must be 1-65535, not {s.port}")
        for name in ("called_aet", "calling_aet"):
            value = getattr(s, name)
            if not 0 < len(value) <= 16 or not value.isascii() or "\\" in value:
                raise InputError(where, f"{name} {value!r} is not a DICOM AE title (1-16 ASCII characters)")
    if s.timeout <= 0:
        raise InputError(where, f"timeout must be positive, not {s.timeout:g} s")
    return s


def load_settings(config: str | os.PathLike | None = None, **options) -> PacsSettings:
    """Settings from the config file (``config``, else ``$TOTALFM_PACS_CONFIG``), overridden by
    the options that are not None, the password from ``$TOTALFM_PACS_PASSWORD`` when neither
    gives one; InputError naming the file or option at fault."""
    values: dict = {}
    config = config or os.environ.get(CONFIG_ENV) or None
    where = "PACS settings"
    if config:
        path = Path(config).expanduser()
        where = str(path)
        if not path.is_file():
            raise InputError(path, "no such PACS config file")
        try:
            values = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InputError(path, f"is not a JSON PACS config ({type(e).__name__}: line "
                                   f"{getattr(e, 'lineno', '?')})") from None
        if not isinstance(values, dict):
            raise InputError(path, "is not a JSON object of PACS settings")
    values.update({k: v for k, v in options.items() if v is not None})
    if not values.get("password") and os.environ.get(PASSWORD_ENV):
        values["password"] = os.environ[PASSWORD_ENV]
    return _checked(values, where)
