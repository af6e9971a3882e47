"""What the tests that run real programs share: a free loopback port, and the rule for a
missing program (skipped with its install hint; under ``.ci/run``, which installs them all and
sets ``TOTALFM_REQUIRE_SYSTEM_TOOLS=1``, failed)."""
from __future__ import annotations

import os
import socket

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def missing(message: str):
    """Skip, or under .ci/run fail, with ``message`` (what is missing and how to install it)."""
    if os.environ.get("TOTALFM_REQUIRE_SYSTEM_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)
