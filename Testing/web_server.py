"""The browser tests' tools: a real ``python -m TotalFMWeb`` server on loopback, Debian's
Chromium driven by Playwright (no browser download), and measures on captured view images.

``.ci/run`` installs ``chromium`` and the web extra and sets ``TOTALFM_REQUIRE_SYSTEM_TOOLS=1``,
so a missing browser fails the tests there instead of skipping them."""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from system_tools import free_port, missing

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
APT_HINT = "apt-get install chromium"


def require_browser() -> str:
    pytest.importorskip("trame_slicer", reason="the web extra is not installed (pip install -e \".[web]\")")
    pytest.importorskip("playwright", reason="playwright is not installed (pip install -e \".[dev]\")")
    if Path(CHROMIUM).is_file():
        return CHROMIUM
    missing(f"{CHROMIUM} is not installed ({APT_HINT})")


@contextmanager
def web_server(*args: str, env: dict | None = None, tmp: Path | None = None, ready: str = "TotalFM review"):
    """A review server (``python -m TotalFMWeb ARGS --port P``) until the block ends: its URL
    as it prints it. ``tmp`` becomes its temporary folder (where session folders go)."""
    port = free_port()
    environment = {**os.environ, **(env or {})}
    if tmp is not None:
        environment["TMPDIR"] = str(tmp)
    log = (tmp or Path("/tmp")) / f"web-server-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "TotalFMWeb", "--port", str(port), *args],
                                   cwd=ROOT / "TotalFMSlicer", env=environment, stdout=subprocess.PIPE,
                                   stderr=out)
    try:
        deadline = time.monotonic() + 120
        while True:
            line = process.stdout.readline().decode()
            if line.startswith(ready):
                break
            if not line and process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not start: {log.read_text()[-3000:]}")
        yield line.split("open ", 1)[1].strip()
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def image(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int16)


def noise(rgb: np.ndarray) -> float:
    """Share of pixels that differ by more than 80 grey levels from their right neighbour: about
    0.5 and more for the coloured noise once seen in a first streamed frame, a few percent for a CT."""
    grey = rgb.mean(axis=2)
    return float((np.abs(np.diff(grey, axis=1)) > 80).mean())


def pixels_near(rgb: np.ndarray, color, tolerance: int = 12) -> int:
    return int((np.abs(rgb - np.asarray(color)[None, None, :]).max(axis=2) <= tolerance).sum())
