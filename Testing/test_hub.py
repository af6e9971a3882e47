"""Official checkpoint cache: offline failure message, pre-placed file, cache helpers."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from TotalFMLib.models import hub
from TotalFMLib.errors import ModelError


@pytest.fixture
def home(tmp_path, monkeypatch):
    # per test, unlike conftest's module-wide home: these tests fill, delete and re-point the cache
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


# ------------------------------------------------------- streaming download (local server)
class _Hub:
    """A local stand-in for huggingface.co: /<repo>/resolve/main/<file> redirects to a CDN path
    that serves the bytes, as the Hub does for large files."""

    def __init__(self, payload: bytes):
        import http.server
        import threading

        self.payload = payload
        self.requests: list[tuple[str, str | None]] = []  # (path, Authorization header)
        self.mode = "ok"  # "ok", "missing" (404), "short" (closes early)
        hub_ = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_GET(self):
                hub_.requests.append((self.path, self.headers.get("Authorization")))
                if self.path == f"/{hub.OFFICIAL_REPO}/resolve/main/{hub.OFFICIAL_FILE}":
                    if hub_.mode == "missing":
                        self.send_error(404, "Entry not found")
                        return
                    self.send_response(302)
                    self.send_header("Location", "/cdn/blob?signature=abc")
                    self.end_headers()
                elif self.path.startswith("/cdn/blob"):
                    body = hub_.payload[: len(hub_.payload) // 3] if hub_.mode == "short" else hub_.payload
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(hub_.payload)))
                    self.end_headers()
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                else:
                    self.send_error(404)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def local_hub(home, monkeypatch):
    import os

    from huggingface_hub import constants

    payload = os.urandom(3 * (1 << 20) + 12345)  # several chunks, not a whole number of them
    server = _Hub(payload)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    for proxy in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    yield server
    server.close()


def test_download_reports_progress_and_lands_whole(home, local_hub):
    calls = []
    path = hub.official_checkpoint(progress=lambda f, m: calls.append((f, m)))
    assert path == home / hub.OFFICIAL_FILE and path.read_bytes() == local_hub.payload
    assert sorted(p.name for p in home.iterdir()) == [hub.OFFICIAL_FILE]  # no temp file left
    fractions = [f for f, _ in calls]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0 and len(fractions) >= 4
    assert fractions == sorted(fractions)
    assert all(hub.OFFICIAL_FILE in m for _, m in calls) and "3 of 3 MB" in calls[-1][1]
    # the token goes to the Hub address only, not to the CDN address it redirects to
    assert [a for p, a in local_hub.requests] == ["Bearer hf_test_token", None]
    # cached now: no request at all
    assert hub.official_checkpoint(progress=lambda f, m: calls.append((f, m))) == path
    assert len(local_hub.requests) == 2


def test_broken_download_leaves_nothing(home, local_hub):
    local_hub.mode = "short"
    with pytest.raises(ModelError, match=r"connection closed after \d+ of \d+ bytes") as info:
        hub.official_checkpoint(progress=False)
    assert "\n" not in str(info.value) and str(home / hub.OFFICIAL_FILE) in str(info.value)
    assert list(home.iterdir()) == []
    local_hub.mode = "missing"
    with pytest.raises(ModelError, match="HTTP Error 404"):
        hub.official_checkpoint(progress=False)
    assert list(home.iterdir()) == []


def test_cancelled_download_leaves_nothing(home, local_hub):
    from TotalFMLib.errors import Cancelled

    calls = []
    with pytest.raises(Cancelled):
        hub.official_checkpoint(progress=lambda f, m: calls.append(f), cancel=lambda: len(calls) > 2)
    assert 0.0 < calls[-1] < 1.0
    assert list(home.iterdir()) == []
