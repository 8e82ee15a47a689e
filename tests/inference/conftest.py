"""Fixtures for inference tests: the perfect stand-in predictor of the evaluation tests."""

from __future__ import annotations

import pytest
from evaluation.oracle import OracleLog, install_oracle


@pytest.fixture
def oracle(monkeypatch) -> OracleLog:
    """A perfect stand-in predictor (tests/evaluation/oracle.py); returns its call log."""
    return install_oracle(monkeypatch)
