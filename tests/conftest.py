"""Fixtures for the whole suite: a runtime on the stub bus."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from common.runtime import Runtime
from tests.support import make_runtime, runtime_config

__all__ = ["runtime_config"]


@pytest.fixture(params=["memory", "sqlite"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime on the stub bus: ``runtime.bus.join()`` runs every queued message."""
    rt = make_runtime(tmp_path, request.param)
    yield rt
    rt.close()
