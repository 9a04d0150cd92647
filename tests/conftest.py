"""Fixtures for the whole suite: a runtime on the stub bus."""

from __future__ import annotations

import os
import subprocess

# Every message is checked by jsonschema too, and a compiled-validator "valid" that
# jsonschema refuses fails the test (pipelinejobs.domain.validation); set before the
# package is imported, and inherited by the servers the tests start.
os.environ.setdefault("PIPELINEJOBS_VALIDATION_CROSSCHECK", "1")

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelinejobs.adapters.store.memory import MemoryStore
from pipelinejobs.adapters.store.sqlite import SQLiteStore
from pipelinejobs.runtime.dispatch import Runtime
from tests.containers import PodmanService, missing, unavailable
from tests.leaks import unclosed
from tests.registry import Registry, registries_conf
from tests.slurm import SlurmCluster
from tests.slurm import missing as slurm_missing
from tests.slurm import unavailable as slurm_unavailable
from tests.support import FakeClock, make_runtime, runtime_config

__all__ = ["runtime_config"]


@pytest.fixture(params=["memory", "sqlite"])
def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    """A runtime on the stub bus: ``runtime.bus.join()`` runs every queued message."""
    rt = make_runtime(tmp_path, request.param)
    yield rt
    rt.close()


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


@pytest.fixture(scope="session", autouse=True)
def closes_what_it_opens() -> Iterator[None]:
    """Fail the run if anything it opened is still open once every other fixture is
    torn down (set up first, so torn down last): such a socket would otherwise warn
    only at interpreter shutdown, after the summary, where nothing fails
    (``tests/leaks.py``)."""
    yield
    left = unclosed()
    if left:
        pytest.fail(
            "the test run left resources open (close them where they are made):\n  "
            + "\n  ".join(left),
            pytrace=False,
        )


# -- a real container engine (tests/containers.py) ----------------------------------------


@pytest.fixture(scope="session")
def test_registry() -> Iterator[Registry]:
    registry = Registry()
    yield registry
    registry.close()


@pytest.fixture(scope="session")
def podman_service(
    tmp_path_factory: pytest.TempPathFactory, test_registry: Registry
) -> Iterator[PodmanService]:
    """The real engine, for the session: started on first use, stopped at the end."""
    why = missing()
    if why:
        unavailable(why)
    workdir = tmp_path_factory.mktemp("podman")
    conf = registries_conf(workdir / "registries.conf", test_registry.host)
    try:
        service = PodmanService(workdir, conf)
    except RuntimeError as exc:
        unavailable(str(exc))
    yield service
    service.close()


# -- a real Slurm cluster (tests/slurm.py) ----------------------------------------------------


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[SlurmCluster]:
    """A one-node Slurm, for the session: started on first use, stopped at the end."""
    why = slurm_missing()
    if why:
        slurm_unavailable(why)
    try:
        cluster = SlurmCluster()
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        slurm_unavailable(f"the Slurm test cluster did not start: {exc}")
    yield cluster
    cluster.close()
