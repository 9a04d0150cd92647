"""Fixtures for the whole suite: a runtime on the stub bus, and real brokers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.bus.stub import StubBus
from common.config import load_config
from common.runtime import Runtime
from common.store.memory import MemoryStore
from common.store.sqlite import SQLiteStore


def runtime_config(tmp_path: Path, **sections: dict) -> object:
    overrides = {
        "system": {"data_dir": str(tmp_path / "data")},
        "tokens": {"secret": "s" * 32, "admin_secret": "a" * 32},
    }
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return load_config(env={}, overrides=overrides)


@pytest.fixture(params=["memory", "sqlite"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime on the stub bus: ``runtime.bus.join()`` runs every queued message."""
    store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "rt.sqlite3")
    bus = StubBus()
    rt = Runtime(runtime_config(tmp_path), store=store, bus=bus)  # type: ignore[arg-type]
    bus.deliver = rt.deliver
    yield rt
    rt.close()
