"""Shared by the converter's tests: the ``tf`` marker (tests that need the TensorFlow environment)."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "tf: needs the TensorFlow environment (.venv-tf, `make tf-env`); run by `make test-tf`"
    )
