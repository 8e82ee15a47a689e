"""Shared test fixtures: where the real sample data lives."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: The shipped raw sample datasets, in their public layouts (see samples/README.md).
SAMPLES = REPO / "samples"
#: The read-only shared data folder beside the repository (present in development and CI).
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    if not SAMPLES.is_dir():
        pytest.skip("samples/ is not in this checkout")
    return SAMPLES


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA
