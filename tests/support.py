"""Helpers shared across the test suite (not a test module, not a conftest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipelinejobs.adapters.bus.stub import StubBus
from pipelinejobs.adapters.store.memory import MemoryStore
from pipelinejobs.adapters.store.sqlite import SQLiteStore
from pipelinejobs.config import Config, load_config
from pipelinejobs.domain.clock import Clock, system_clock
from pipelinejobs.runtime.dispatch import Runtime


class FakeClock:
    """A clock that moves only when told to: dates and expiry without sleeping."""

    def __init__(self, start: float = 1_790_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def runtime_config(tmp_path: Path, **sections: dict[str, Any]) -> Config:
    """Settings for a test runtime: data under ``tmp_path``, fixed secrets."""
    overrides: dict[str, dict[str, Any]] = {
        "system": {"data_dir": str(tmp_path / "data")},
        "tokens": {"secret": "s" * 32, "admin_secret": "a" * 32},
        # Jobs report through the stub bus unless a test asks for another backend.
        "launcher": {"backend": "inline"},
    }
    for name, values in sections.items():
        overrides.setdefault(name, {}).update(values)
    return load_config(env={}, overrides=overrides)


def make_runtime(
    tmp_path: Path, kind: str = "memory", clock: Clock = system_clock, **sections: dict[str, Any]
) -> Runtime:
    """A runtime on a fresh StubBus (``stub(rt).join()`` runs what is queued)."""
    store = MemoryStore() if kind == "memory" else SQLiteStore(tmp_path / "rt.sqlite3")
    bus = StubBus()
    rt = Runtime(runtime_config(tmp_path, **sections), store=store, bus=bus, clock=clock)
    bus.deliver = rt.deliver
    return rt


def stub(rt: Runtime) -> StubBus:
    """The runtime's stub bus."""
    assert isinstance(rt.bus, StubBus)
    return rt.bus
