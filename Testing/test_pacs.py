"""The hospital round trip against a real PACS (Orthanc on loopback, started by the tests):
store the example series, find it, retrieve it, score it, store the SEG and SR back, find
them in Orthanc, dciodvfy clean, values read back equal; over DICOM networking and over
DICOMweb with a password. And the faults: a refused connection, a PACS that never answers,
a PACS that refuses or silently drops an object, wrong credentials: one line each, exit 3,
no SR without its SEG, no credentials printed.
"""
from __future__ import annotations

import csv
import socket
import subprocess
import threading

import pytest

from dicom_study import complete_series
from orthanc_server import AET, OUR_AET, PASSWORD, REJECT_SR, USER, free_port, require, start_orthanc
from TotalFMLib.cli import main


@pytest.fixture(scope="module")
def series(tmp_path_factory, dicom_base):
    """The example series with its UIDs filled in (dicom_study.complete_series)."""
    return complete_series(dicom_base[0], tmp_path_factory.mktemp("series") / "soft")


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory):
    server = start_orthanc(tmp_path_factory.mktemp("orthanc"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def objects(tmp_path_factory, series, dicom_base):
    """SEG and SR of the example series, written without a PACS (for the fault tests)."""
    out = tmp_path_factory.mktemp("objects")
    assert main(["analyze", "--ct", str(series[0].parent), "--seg", str(dicom_base[1]), "--dicom-out", str(out),
                 "-q"]) == 0
    return [out / "organs_seg.dcm", out / "findings_sr.dcm"]


def dimse(server, timeout: float = 20) -> list[str]:
    return ["--pacs-host", "127.0.0.1", "--pacs-port", str(server.dicom_port), "--pacs-aet", AET,
            "--calling-aet", OUR_AET, "--timeout", str(timeout)]


def run(argv, capsys):
    """(exit status, stdout, stderr) of the totalfm command."""
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def study_uid(series_files) -> str:
    import pydicom

    return str(pydicom.dcmread(series_files[0], stop_before_pixels=True).StudyInstanceUID)


def _check_objects_in_orthanc(server, uid, out, tmp_path):
    """SEG and SR are in the study on Orthanc, dciodvfy-clean, and read back to the CSV."""
    import highdicom as hd
    import pydicom

    by_modality = server.series_by_modality()
    assert set(by_modality) == {"CT", "SEG", "SR"}
    for modality, local in (("SEG", out / "organs_seg.dcm"), ("SR", out / "findings_sr.dcm")):
        (entry,) = by_modality[modality]
        assert server.get(f"/studies/{entry['ParentStudy']}")["MainDicomTags"]["StudyInstanceUID"] == uid
        (instance,) = entry["Instances"]
        copy = tmp_path / f"from_orthanc_{modality}.dcm"
        copy.write_bytes(server.get(f"/instances/{instance}/file"))
        assert pydicom.dcmread(copy) == pydicom.dcmread(local)  # the data set as sent (Orthanc rewrites the file meta)
        report = subprocess.run([require("dciodvfy"), str(copy)], capture_output=True, text=True, timeout=120)
        assert not [line for line in (report.stdout + report.stderr).splitlines() if line.startswith("Error")]
    sr = hd.sr.srread(tmp_path / "from_orthanc_SR.dcm")
    seg = hd.seg.segread(tmp_path / "from_orthanc_SEG.dcm")
    assert sr.StudyInstanceUID == seg.StudyInstanceUID == uid
    with open(out / "scores.csv") as f:
        expected = {(r["organ"], r["finding"]): float(r["score"]) for r in csv.DictReader(f)}
    from TotalFMLib.vocabulary import catalogue

    names = {catalogue.organ(o).display_name: o for o, _ in expected}
    read = {}
    for group in sr.content.get_volumetric_roi_measurement_groups():
        assert group.referenced_segment.referenced_sop_instance_uid == seg.SOPInstanceUID
        for m in group.get_measurements():
            read[(names[group.tracking_identifier], m.name.meaning)] = m.value
    assert read.keys() == expected.keys()
    assert all(abs(read[k] - v) < 1e-6 for k, v in expected.items())


def test_round_trip_over_dicom_networking(orthanc, series, dicom_base, tmp_path, capsys):
    code, out, err = run(["pacs", "store", *map(str, series), *dimse(orthanc)], capsys)
    assert code == 0 and out.count("stored ") == 20, err
    uid = study_uid(series)
    code, out, err = run(["pacs", "find", "--patient-id", "TOTALFM-EXAMPLE-*", *dimse(orthanc)], capsys)
    assert code == 0 and uid in out and "TOTALFM-EXAMPLE-1" in out and "1 study" in err
    code, out, err = run(["pacs", "find", "--patient-id", "NOBODY", *dimse(orthanc)], capsys)
    assert code == 0 and uid not in out and "0 studies" in err

    result = tmp_path / "result"
    code, out, err = run(["pacs", "analyze", uid, "--out", str(result), "--seg", str(dicom_base[1]),
                          *dimse(orthanc)], capsys)
    assert code == 0, err
    assert "stored organs_seg.dcm" in out and "stored findings_sr.dcm" in out
    assert "chose series 'CT Body 3.0'" in err or "scored series" in err
    assert len(list((result / "study" / uid).glob("*.dcm"))) == 20
    _check_objects_in_orthanc(orthanc, uid, result, tmp_path)


def test_retrieve_over_dicomweb_with_a_password(orthanc, series, tmp_path, capsys, monkeypatch):
    """DICOMweb (QIDO, WADO, STOW) with basic authentication; the password comes from the
    environment and appears in no output, nor does the user name."""
    assert main(["pacs", "store", *map(str, series), *dimse(orthanc)]) == 0
    capsys.readouterr()
    uid = study_uid(series)
    web = ["--dicomweb-url", orthanc.dicomweb_url, "--pacs-user", USER, "--timeout", "20"]
    monkeypatch.setenv("TOTALFM_PACS_PASSWORD", PASSWORD)
    code, out, err = run(["pacs", "find", *web], capsys)
    assert code == 0 and uid in out, err
    code, out, err = run(["pacs", "get", uid, "--out", str(tmp_path / "got"), "-q", *web], capsys)
    on_orthanc = len(orthanc.get(f"/studies/{orthanc.get('/studies')[0]}/instances"))
    assert code == 0 and f"received {on_orthanc} instances" in out, err  # 20 CT (+ SEG, SR if stored before)
    got = {p.name for p in (tmp_path / "got").glob("*.dcm")}
    assert len(got) == on_orthanc and got >= {p.name for p in series}
    monkeypatch.setenv("TOTALFM_PACS_PASSWORD", "wrong-" + PASSWORD)
    code, out, err = run(["pacs", "find", *web], capsys)
    assert code == 3 and "refused the credentials (HTTP 401" in err and len(err.strip().splitlines()) == 1
    for text in (out, err):
        assert PASSWORD not in text and USER not in text


def test_dicomweb_store_with_a_config_file(orthanc, objects, tmp_path, capsys, monkeypatch):
    import json

    monkeypatch.delenv("TOTALFM_PACS_PASSWORD", raising=False)
    config = tmp_path / "pacs.json"
    config.write_text(json.dumps({"dicomweb_url": orthanc.dicomweb_url, "username": USER, "password": PASSWORD,
                                  "timeout": 20}))
    code, out, err = run(["pacs", "store", *map(str, objects), "--pacs-config", str(config)], capsys)
    assert code == 0 and out.count("stored ") == 2, err
    assert PASSWORD not in out + err and USER not in out + err


def test_refused_connection(objects, tmp_path, capsys):
    port = free_port()  # nothing listens there
    argv = ["--pacs-host", "127.0.0.1", "--pacs-port", str(port), "--pacs-aet", AET, "--timeout", "5"]
    code, out, err = run(["pacs", "store", *map(str, objects), *argv], capsys)
    assert code == 3 and err.strip() == f"totalfm: error: PACS {AET}@127.0.0.1:{port} refused the connection " \
                                        f"(not running, or another port?)"
    code, out, err = run(["pacs", "find", "--dicomweb-url", f"http://127.0.0.1:{port}/dicom-web"], capsys)
    assert code == 3 and err.strip() == f"totalfm: error: PACS DICOMweb http://127.0.0.1:{port}/dicom-web refused " \
                                        f"the connection (not running, or another port?)"
    out_dir = tmp_path / "out"
    code, out, err = run(["pacs", "analyze", "1.2.3", "--out", str(out_dir), *argv, "-q"], capsys)
    assert code == 3 and "refused the connection" in err
    assert not (out_dir / "organs_seg.dcm").exists() and not (out_dir / "scores.csv").exists()


@pytest.fixture
def silent_server():
    """A TCP server on loopback that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    held, stop = [], threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def test_pacs_that_never_answers(silent_server, objects, capsys):
    argv = ["--pacs-host", "127.0.0.1", "--pacs-port", str(silent_server), "--pacs-aet", AET, "--timeout", "2"]
    code, out, err = run(["pacs", "store", *map(str, objects), *argv], capsys)
    assert code == 3 and len(err.strip().splitlines()) == 1
    assert "did not answer the association request within 2 s" in err
    web = ["--dicomweb-url", f"http://127.0.0.1:{silent_server}/dicom-web", "--timeout", "2"]
    code, out, err = run(["pacs", "store", *map(str, objects[::-1]), *web], capsys)  # SR named first: sent last
    assert code == 3 and "did not answer within 2 s while storing organs_seg.dcm" in err
    assert "nothing was stored; not sent: findings_sr.dcm" in err


def test_pacs_that_refuses_the_objects(tmp_path, objects, capsys):
    """Orthanc that does not let us store: the SEG is refused, the SR is not sent, nothing kept."""
    server = start_orthanc(tmp_path / "orthanc", allow_store=False)
    try:
        code, out, err = run(["pacs", "store", *map(str, objects), *dimse(server, timeout=10)], capsys)
        assert code == 3 and len(err.strip().splitlines()) == 1, err
        assert "organs_seg.dcm" in err and "nothing was stored; not sent: findings_sr.dcm" in err
        assert server.get("/instances") == []
    finally:
        server.stop()


def test_pacs_that_drops_the_sr(tmp_path, objects, capsys):
    """Orthanc with a filter that discards SRs answers success: the check afterwards finds it
    missing and says so; the SEG, sent first, is there."""
    server = start_orthanc(tmp_path / "orthanc", lua=REJECT_SR)
    try:
        code, out, err = run(["pacs", "store", *map(str, objects), *dimse(server)], capsys)
        assert code == 3 and len(err.strip().splitlines()) == 1, err
        assert "answered success for findings_sr.dcm but does not hold it afterwards" in err
        assert "it holds organs_seg.dcm" in err
        assert set(server.series_by_modality()) == {"SEG"}
    finally:
        server.stop()


def test_settings_come_from_options_or_a_file(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TOTALFM_PACS_CONFIG", raising=False)
    code, out, err = run(["pacs", "find"], capsys)
    assert code == 2 and "no PACS host, port, called_aet given" in err
    bad = tmp_path / "pacs.json"
    bad.write_text('{"host": "h", "port": 104, "called_aet": "X", "pasword": "p"}')
    code, out, err = run(["pacs", "find", "--pacs-config", str(bad)], capsys)
    assert code == 2 and "unknown PACS setting pasword" in err and str(bad) in err
    code, out, err = run(["pacs", "find", "--pacs-host", "h", "--pacs-port", "104", "--pacs-aet",
                          "A_TITLE_FAR_TOO_LONG"], capsys)
    assert code == 2 and "is not a DICOM AE title" in err
