"""A real PACS for the tests: Debian's Orthanc (packages ``orthanc``, ``orthanc-dicomweb``),
started on loopback with a configuration written here, in a temporary folder, and stopped
afterwards.

``.ci/run`` installs Orthanc and dicom3tools and sets ``TOTALFM_REQUIRE_SYSTEM_TOOLS=1``, so
there a missing program fails the tests; elsewhere the tests that need them are skipped with
the install command as the reason.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from system_tools import free_port, missing  # noqa: F401 (free_port: for the PACS tests)

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
AET, OUR_AET = "ORTHANC", "TOTALFM"
USER, PASSWORD = "reader", "s3cret-Pa55word"   # Orthanc's HTTP users (DICOMweb, REST)
APT_HINT = "apt-get install orthanc orthanc-dicomweb dicom3tools"


def require(program: str) -> str:
    """The program's path; skip (or, under .ci/run, fail) when it is not installed."""
    path = shutil.which(program) or (program if Path(program).is_file() else None)
    if path:
        return path
    missing(f"{program} is not installed ({APT_HINT})")


@dataclass
class Orthanc:
    folder: Path
    http_port: int
    dicom_port: int
    process: subprocess.Popen

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        return f"{self.rest}/dicom-web"

    def get(self, path: str):
        """JSON of a REST call (as the test's own HTTP user)."""
        import requests

        r = requests.get(self.rest + path, auth=(USER, PASSWORD), timeout=30)
        r.raise_for_status()
        return r.json() if "json" in r.headers.get("content-type", "") else r.content

    def series_by_modality(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for s in self.get("/series?expand"):
            out.setdefault(s["MainDicomTags"].get("Modality", ""), []).append(s)
        return out

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_orthanc(folder: Path, lua: str | None = None, allow_store: bool = True) -> Orthanc:
    """Orthanc on free loopback ports, its storage in ``folder``; ``lua``: a Lua script (e.g. a
    ``ReceivedInstanceFilter`` that drops some objects); ``allow_store`` False: our AE may not
    store (Orthanc refuses our C-STOREs)."""
    require(ORTHANC)
    folder.mkdir(parents=True, exist_ok=True)
    http_port, dicom_port = free_port(), free_port()
    config = {
        "Name": "TotalFM test PACS", "StorageDirectory": str(folder / "db"), "IndexDirectory": str(folder / "db"),
        "HttpPort": http_port, "DicomPort": dicom_port, "DicomAet": AET, "RemoteAccessAllowed": False,
        "AuthenticationEnabled": True, "RegisteredUsers": {USER: PASSWORD}, "DicomCheckCalledAet": True,
        "DicomModalities": {"totalfm": {"AET": OUR_AET, "Host": "127.0.0.1", "Port": 1,
                                        "AllowEcho": True, "AllowFind": True, "AllowGet": True, "AllowStore": allow_store,
                                        "AllowMove": False}},
        "DicomAlwaysAllowStore": False, "StorageCompression": False, "HttpTimeout": 30, "ConcurrentJobs": 1,
        "Plugins": [str(DICOMWEB_PLUGIN)] if DICOMWEB_PLUGIN.exists() else [],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    if lua:
        (folder / "filter.lua").write_text(lua)
        config["LuaScripts"] = [str(folder / "filter.lua")]
    (folder / "orthanc.json").write_text(json.dumps(config, indent=1))
    log = open(folder / "orthanc.log", "w")
    process = subprocess.Popen([ORTHANC, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT,
                               cwd=folder)
    server = Orthanc(folder, http_port, dicom_port, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"Orthanc stopped at start: {(folder / 'orthanc.log').read_text()[-2000:]}")
        try:
            server.get("/system")
            return server
        except Exception:
            time.sleep(0.2)
    server.stop()
    raise RuntimeError("Orthanc did not answer within 60 s")


REJECT_SR = """
function ReceivedInstanceFilter(dicom, origin, info)
  if dicom.Modality == 'SR' then
    return false
  end
  return true
end
"""
