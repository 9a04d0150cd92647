"""Fixtures of the observability tests: this process's metrics, made afresh."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pipelinejobs.observability import metrics
from pipelinejobs.observability.metrics import Metrics


@pytest.fixture
def recorded() -> Iterator[Metrics]:
    """This process's metrics, new for the test (and dropped after it): what the
    middleware, the gateway's hooks and the signals' receivers record into."""
    metrics.reset()
    made = metrics.current()
    yield made
    metrics.reset()


# Every store backend (memory, SQLite, mongomock, MongoDB when MONGODB_URI names one),
# as the store contract tests get them: heartbeats run on each.
from tests.adapters.store.conftest import backend, store  # noqa: E402, F401
