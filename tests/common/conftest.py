"""Fixtures shared by the tests of ``common``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.store.memory import MemoryStore
from common.store.sqlite import SQLiteStore


class FakeClock:
    """A clock that moves only when told to: tokens and dates without sleeping."""

    def __init__(self, start: float = 1_790_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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
