"""The web app's checks that need no browser: upload names, saved-review bundles, the access
rule, and the install hint of ``totalfm serve``."""
from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import pytest
from TotalFMLib.errors import InputError
from TotalFMWeb import access, case_files
from TotalFMWeb.uploads import Uploads, UploadRefused, safe_name


@pytest.mark.parametrize("name, expected", [
    ("ct.nii.gz", "ct.nii.gz"), ("../../etc/passwd", "passwd"), ("C:\\scans\\IM-0001.dcm", "IM-0001.dcm"),
    ("..", "file0003"), (".bashrc", "file0003"), ("a b;rm -rf.nrrd", "a_b_rm_-rf.nrrd"), ("", "file0003")])
def test_upload_names_stay_inside_the_batch_folder(name, expected):
    assert safe_name(name, 3) == expected


def test_uploads_go_to_numbered_private_batches(tmp_path):
    uploads = Uploads(tmp_path, 10)
    first, second = uploads.new_batch("ct"), uploads.new_batch("seg")
    assert (first.name, second.name) == ("001-ct", "002-seg")
    assert first.stat().st_mode & 0o777 == 0o700
    with pytest.raises(UploadRefused, match="unknown upload kind"):
        uploads.new_batch("../x")


def _bundle(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return path


MRML = b'<MRML><VolumeArchetypeStorage id="s1" fileName="%s"/></MRML>'


def test_a_saved_review_is_checked_before_the_scene_reader_sees_it(tmp_path):
    good = _bundle(tmp_path / "good.mrb", {"case/case.mrml": MRML % b"Data/ct.nrrd", "case/Data/ct.nrrd": b"x"})
    case_files.check_bundle(good)
    cases = {
        "names a path outside the bundle": {"../evil.mrml": MRML % b"ct.nrrd"},
        "reads a file outside the bundle: /etc/passwd": {"a/a.mrml": MRML % b"/etc/passwd"},
        "reads a file outside the bundle: ../../x.nrrd": {"a/a.mrml": MRML % b"../../x.nrrd"},
        "holds one scene (.mrml); this one holds 0": {"a/ct.nrrd": b"x"},
        "not valid MRML XML": {"a/a.mrml": b"<MRML><unclosed></MRML>"},
    }
    for problem, members in cases.items():
        path = _bundle(tmp_path / "bad.mrb", members)
        with pytest.raises(InputError, match=problem.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
            case_files.check_bundle(path)
    (tmp_path / "text.mrb").write_text("not a zip")
    with pytest.raises(InputError, match="cannot be opened as a zip"):
        case_files.check_bundle(tmp_path / "text.mrb")


def test_uploads_become_a_file_or_the_folder_of_a_series(tmp_path):
    series = [tmp_path / "001-ct" / f"IM{i}.dcm" for i in range(3)]
    assert case_files.arrange_uploads(series, [], tmp_path) == (tmp_path / "001-ct", None)
    assert case_files.arrange_uploads([tmp_path / "ct.nii.gz"], [tmp_path / "s.nii.gz"], tmp_path) == \
           (tmp_path / "ct.nii.gz", tmp_path / "s.nii.gz")
    with pytest.raises(InputError, match="upload a CT first"):
        case_files.arrange_uploads([], [], tmp_path)
    with pytest.raises(InputError, match="separate batches"):
        case_files.arrange_uploads([tmp_path / "a" / "1.dcm", tmp_path / "b" / "2.dcm"], [], tmp_path)


def test_listening_beyond_loopback_needs_a_token(monkeypatch):
    monkeypatch.delenv(access.TOKEN_ENV, raising=False)
    assert access.listen_token("127.0.0.1", None) is None
    assert access.listen_token("localhost", None) is None
    assert access.listen_token("::1", None) is None
    for host in ("0.0.0.0", "10.1.2.3", "reading-room.example.org"):
        with pytest.raises(ValueError, match="needs an access token"):
            access.listen_token(host, None)
    assert access.listen_token("0.0.0.0", "a-long-enough-token") == "a-long-enough-token"
    with pytest.raises(ValueError, match="too short"):
        access.listen_token("0.0.0.0", "short")
    monkeypatch.setenv(access.TOKEN_ENV, "token-from-the-environment")
    assert access.listen_token("0.0.0.0", None) == "token-from-the-environment"


def test_totalfm_serve_names_the_missing_web_extra(monkeypatch, capsys):
    from TotalFMLib import cli

    monkeypatch.setitem(sys.modules, "trame_slicer", None)  # as if the web extra were not installed
    assert cli.main(["serve", "--help"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("totalfm: error: totalfm serve needs the web app: pip install") and "\n" not in err
