"""The engines the docker launcher's tests run on (engines.py), and the Slurms the slurm
launcher's run on (slurm_launches.py).

``engine`` is parametrized: ``[fake]`` is the fake engine, ``[podman]`` the real one
(tests/containers.py; its session fixtures are in tests/conftest.py), so ``pytest -k
podman`` counts what ran for real. Without podman the ``[podman]`` cases skip, and
fail under ``CI=true``. ``slurm`` likewise: ``[fake]`` the in-memory Slurm,
``[real]`` the session's one-node cluster (tests/slurm.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.adapters.launchers.callbacks import Capture
from tests.adapters.launchers.engines import FakeUnderTest, PodmanUnderTest
from tests.adapters.launchers.slurm_launches import FakeUnderTest as FakeSlurmUnderTest
from tests.adapters.launchers.slurm_launches import RealUnderTest as RealSlurmUnderTest


@pytest.fixture(params=["fake", "podman"])
def engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[FakeUnderTest | PodmanUnderTest]:
    """Each engine in turn, behind the same questions (engines.py)."""
    under_test: FakeUnderTest | PodmanUnderTest
    if request.param == "fake":
        under_test = FakeUnderTest()
    else:
        service = request.getfixturevalue("podman_service")
        registry = request.getfixturevalue("test_registry")
        under_test = PodmanUnderTest(service, registry, tmp_path)
    yield under_test
    under_test.close()


@pytest.fixture(params=["fake", "real"])
def slurm(request: pytest.FixtureRequest) -> Iterator[FakeSlurmUnderTest | RealSlurmUnderTest]:
    """Each Slurm in turn, behind the same questions (slurm_launches.py)."""
    under_test: FakeSlurmUnderTest | RealSlurmUnderTest
    if request.param == "fake":
        under_test = FakeSlurmUnderTest()
    else:
        under_test = RealSlurmUnderTest(request.getfixturevalue("slurm_cluster"))
    yield under_test
    under_test.close()


@pytest.fixture
def capture() -> Iterator[Capture]:
    server = Capture()
    yield server
    server.close()
