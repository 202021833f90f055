"""Fixtures of the registry's unit tests: a real SQLite store and a model repository, both in the test's folder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.store import Store, open_store
from service.triton.repository import ModelRepository


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await open_store("", tmp_path)
    yield opened
    await opened.close()


@pytest.fixture
def repository(tmp_path: Path) -> ModelRepository:
    return ModelRepository(tmp_path / "models", tmp_path / "staging")
