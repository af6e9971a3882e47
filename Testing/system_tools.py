"""What the tests that run real programs share: a free loopback port, and the rule for a
missing program (skipped with its install hint; under ``.ci/run``, which installs them all and
sets ``TOTALFM_REQUIRE_SYSTEM_TOOLS=1``, failed)."""
from __future__ import annotations

import os

import pytest
from TotalFMWeb.launcher import free_port  # noqa: F401 (the tests' servers take ports as the launcher does)


def missing(message: str):
    """Skip, or under .ci/run fail, with ``message`` (what is missing and how to install it)."""
    if os.environ.get("TOTALFM_REQUIRE_SYSTEM_TOOLS") == "1":
        pytest.fail(message)
    pytest.skip(message)
