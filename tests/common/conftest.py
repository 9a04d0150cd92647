"""Fixtures shared by the tests of ``common``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.store.memory import MemoryStore
from common.store.sqlite import SQLiteStore
from tests.support import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=["memory", "sqlite"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """A fresh store of each thread-safe kind (MongoDB is covered by the store contract)."""
    if request.param == "memory":
        yield MemoryStore()
        return
    store = SQLiteStore(tmp_path / "jobs.sqlite3")
    yield store
    store.close()
