"""Official checkpoint cache: offline failure message, pre-placed file, cache helpers."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from TotalFMLib import hub
from TotalFMLib.errors import ModelError


@pytest.fixture
def home(tmp_path, monkeypatch):
    folder = tmp_path / "totalfm_home"
    monkeypatch.setenv("TOTALFM_HOME", str(folder))
    return folder


def test_model_cache_dir_env_and_default(home, monkeypatch):
    from platformdirs import user_cache_dir

    assert hub.model_cache_dir() == home
    monkeypatch.delenv("TOTALFM_HOME")
    assert hub.model_cache_dir() == Path(user_cache_dir("totalfm")) / "models"


def test_offline_download_names_repo_file_and_target(home, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ModelError) as info:
        hub.official_checkpoint(progress=False)
    msg = str(info.value)
    target = home / hub.OFFICIAL_FILE
    for part in (hub.OFFICIAL_REPO, hub.OFFICIAL_FILE, str(target), "research purposes only", "TOTALFM_HOME",
                 "offline"):
        assert part in msg
    assert "\n" not in msg
    assert not target.exists()


def test_pre_placed_file_is_returned_without_network(home, monkeypatch):
    target = home / hub.OFFICIAL_FILE
    home.mkdir()
    target.write_bytes(b"weights")
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # any download attempt would now fail
    assert hub.official_checkpoint() == target
    other = home / "elsewhere"
    other.mkdir()
    (other / hub.OFFICIAL_FILE).write_bytes(b"w")
    assert hub.official_checkpoint(cache_dir=other) == other / hub.OFFICIAL_FILE
    with pytest.raises(ModelError, match="huggingface_hub"):  # an empty folder must try to download
        hub.official_checkpoint(cache_dir=home / "empty")


def test_clear_cache_removes_model_files_only(home):
    home.mkdir()
    (home / hub.OFFICIAL_FILE).write_bytes(b"x" * 1000)
    meta = home / ".cache" / "huggingface" / "download"
    meta.mkdir(parents=True)
    (meta / f"{hub.OFFICIAL_FILE}.metadata").write_bytes(b"y" * 24)
    (home / "notes.txt").write_text("mine")
    assert hub.cache_size() == 1024
    assert hub.clear_cache() == 1024
    assert not (home / hub.OFFICIAL_FILE).exists() and not (home / ".cache").exists()
    assert (home / "notes.txt").read_text() == "mine"
    assert hub.cache_size() == 0 and hub.clear_cache() == 0
    assert hub.cache_size(home / "missing") == 0
