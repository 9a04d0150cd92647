"""Container jobs end to end, as a user runs them: ``pipelinejobs serve`` with
``launcher.docker_url`` on a real podman (tests/containers.py), over HTTP.

A pipeline's container component is registered with the admin key; a launch runs it
on the engine, its supervisor reports, its output in /archive is indexed and its
stdout is the job's log. A job cancelled while its container runs: the container is
gone within 2 s, and the job records STOPPED.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from tests.containers import PodmanService

from .conftest import _free_port
from .server import Server, start_server
from .test_local_jobs import job_when, launch


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, podman_service: PodmanService
) -> Iterator[Server]:
    settings = {"PIPELINEJOBS_LAUNCHER_DOCKER_URL": podman_service.url}
    running = start_server(tmp_path_factory.mktemp("containers") / "data", _free_port(),
                           settings=settings)  # fmt: skip
    yield running
    running.stop()


def register(server: Server, image: str, name: str) -> str:
    """A pipeline whose jobs run ``image`` (a container component: admin only)."""
    created = requests.post(
        f"{server.url}/actors/v2/pipelines-manager/messages",
        params={"sync": "true"},
        headers={"Authorization": f"Bearer {server.admin_key}"},
        timeout=30,
        json={"name": name, "components": [{"repo": image, "options": {"command": ["run"]}}]},
    )
    assert created.status_code == 200, created.text
    return str(created.json()["result"]["result"]["uuid"])


def test_a_container_job_is_run_indexed_and_logged(
    server: Server, podman_service: PodmanService
) -> None:
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    image = podman_service.program_image(stdout=b"hello from podman\n")
    result = launch(server, {}, register(server, image, "In a container"))
    uuid = result["uuid"]
    assert result["launch"]["backend"] == "docker" and result["launch"]["image"] == image

    def indexed(job: dict) -> bool:
        return job["state"] == "FINISHED" and job.get("last_event") == "indexed"

    job = job_when(server, uuid, indexed, "the container job to finish and be indexed")
    statuses = [(h.get("data") or {}).get("status") for h in job["history"]]
    assert "RUNNING" in statuses and "FINISHED" in statuses  # its supervisor's callbacks
    files = requests.get(f"{server.url}/jobs/{uuid}/files", headers=auth, timeout=10).json()
    # What the container wrote in /archive (the probe's report of itself), indexed.
    paths = {f["relative_path"] for f in files["result"]["files"]}
    assert {".probe/argv", ".probe/env"} <= paths
    log = requests.get(f"{server.url}/jobs/{uuid}/log", headers=auth, timeout=10)
    assert "hello from podman" in log.text
    assert podman_service.job_containers() == []  # removed at its end


def test_a_cancelled_container_job_stops_its_container_within_2s(
    server: Server, podman_service: PodmanService
) -> None:
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    image = podman_service.program_image(forever=True)
    result = launch(server, {}, register(server, image, "Forever in a container"))
    uuid = result["uuid"]
    job_when(server, uuid, lambda j: [h["name"] for h in j["history"]].count("run") == 2,
             "the supervisor to report RUNNING")  # fmt: skip
    assert len(podman_service.job_containers()) == 1

    asked = time.monotonic()
    cancelled = requests.post(
        f"{server.url}/actors/v2/jobs-manager/messages",
        params={"sync": "true"},
        headers=auth,
        timeout=30,
        json={"uuid": uuid, "name": "fail", "token": result["token"],
              "data": {"reason": "cancelled by the test"}},
    )  # fmt: skip
    assert cancelled.status_code == 200, cancelled.text
    while podman_service.job_containers():
        assert time.monotonic() - asked < 10, "the container was not removed"
        time.sleep(0.02)
    gone = time.monotonic() - asked
    print(f"\n[podman] job cancelled -> its container gone: {gone:.2f} s")
    assert gone < 2.0

    def stopped(job: dict) -> bool:
        return any((h.get("data") or {}).get("status") == "STOPPED" for h in job["history"])

    job = job_when(server, uuid, stopped, "the container's stop to be recorded")
    assert job["state"] == "FAILED"
    assert [h["name"] for h in job["history"]] == ["create", "run", "run", "fail", "update"]
    assert "cancelled by the test" in job["history"][-1]["data"]["error"]
