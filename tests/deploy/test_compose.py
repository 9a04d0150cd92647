"""deploy/compose.yml brought up for real, with podman-compose, and a job walked through it.

The images are built here first, as ``make image`` builds them: the Debian base by
deploy/local-base.sh when the machine lacks it (no registry is reachable; ~90 s,
once per machine), then the PipelineJobs image on it by deploy/build-image.sh (its
cache holds while the code does not change). Then compose.yml with
compose.local.yml (Redis from the local base, SQLite on a shared volume in place of
MongoDB, the gateway published on a free port) is brought up; once every
container's healthcheck passes, a job is registered, launched and followed to
FINISHED and indexed through the published port — the gateway, the broker and
two worker containers (managers, indexer) sharing the archive and the store. The
project is torn down (containers, network, volumes) whatever happens.

Podman runs healthchecks from systemd timers; these machines have no systemd, so
:func:`wait_healthy` runs them (``podman healthcheck run``) as the timers would —
and podman-compose on podman before 4.6 ignores ``condition: service_healthy``
(it warns), so the healthchecks are waited for here rather than by compose.
Marked slow: about a minute on a warm machine (its duration is printed).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.containers import PODMAN, podman, unavailable

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
IMAGE = "localhost/pipelinejobs:latest"
BASE_IMAGE = "localhost/pipelinejobs-base:bookworm"
COMPOSE = shutil.which("podman-compose", path=str(Path(sys.executable).parent))
SERVICES = ("redis", "gateway", "managers", "indexer", "notifier")

pytestmark = pytest.mark.slow


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def timed(what: str, argv: list[str], env: dict[str, str] | None = None) -> float:
    """Run ``argv`` (failing the test with its output); the seconds it took."""
    began = time.monotonic()
    done = subprocess.run(
        argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    took = time.monotonic() - began
    assert done.returncode == 0, f"{what} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    print(f"\n[compose] {what}: {took:.1f} s")
    return took


@pytest.fixture(scope="module")
def images() -> None:
    """The base (once per machine) and the image (every run: the code under test)."""
    if PODMAN is None or COMPOSE is None:
        unavailable("podman and podman-compose are needed (.ci/run, make install)")
    if podman("image", "exists", BASE_IMAGE, check=False).returncode != 0:
        if shutil.which("debootstrap") is None or os.geteuid() != 0:
            unavailable(f"no {BASE_IMAGE}, and debootstrap (as root) to make it")
        timed("make local-base (cold)", [str(DEPLOY / "local-base.sh")])
    env = {**os.environ, "IMAGE": IMAGE, "BASE_IMAGE": BASE_IMAGE, "PYTHON": sys.executable}
    timed("make image", [str(DEPLOY / "build-image.sh")], env)


class Project:
    """A compose project of its own name, brought up and always brought down."""

    def __init__(self, tmp_path: Path) -> None:
        self.name = f"pjtest{secrets.token_hex(3)}"
        self.port = free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PIPELINEJOBS_")},
            "PIPELINEJOBS_TOKENS_SECRET": secrets.token_hex(32),
            "PIPELINEJOBS_TOKENS_ADMIN_SECRET": secrets.token_hex(32),
            "PIPELINEJOBS_PORT": str(self.port),
            "PIPELINEJOBS_IMAGE": IMAGE,
            "PIPELINEJOBS_BASE_IMAGE": BASE_IMAGE,
        }
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tmp_path / "compose.log"

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        assert COMPOSE is not None
        argv = [COMPOSE, "-p", self.name, "-f", "compose.yml", "-f", "compose.local.yml", *args]
        done = subprocess.run(
            argv, cwd=DEPLOY, env=self.env, capture_output=True, text=True, timeout=300
        )
        with open(self.log, "a") as out:
            out.write(f"$ {' '.join(args)}\n{done.stdout}\n{done.stderr}\n")
        assert not check or done.returncode == 0, self.log.read_text()[-4000:]
        return done

    def container(self, service: str) -> str:
        return f"{self.name}_{service}_1"

    def down(self) -> None:
        self.compose("down", "--volumes", "--timeout", "5", check=False)
        # Whatever compose missed: nothing of this project may outlive the test.
        label = f"label=io.podman.compose.project={self.name}"
        podman("rm", "--force", "--time", "0", "--filter", label, check=False)
        volumes = podman("volume", "ls", "--quiet", "--filter", label, check=False).stdout
        for volume in volumes.split():
            podman("volume", "rm", "--force", volume, check=False)
        podman("network", "rm", "--force", f"{self.name}_default", check=False)

    def logs(self) -> str:
        return "\n".join(
            f"--- {s}\n" + podman("logs", "--tail", "30", self.container(s), check=False).stderr
            for s in SERVICES
        )


@pytest.fixture
def project(images: None, tmp_path: Path) -> Iterator[Project]:
    running = Project(tmp_path)
    try:
        yield running
    finally:
        running.down()
        left = podman("ps", "-a", "--quiet", "--filter", f"name={running.name}", check=False)
        assert left.stdout.strip() == "", "containers of the project were left behind"


def wait_healthy(project: Project, timeout: float = 120.0) -> float:
    """Run every service's healthcheck until each passes (what systemd's timers would
    do for podman); the seconds it took."""
    began = time.monotonic()
    pending = set(SERVICES)
    while pending:
        for service in sorted(pending):
            ran = podman("healthcheck", "run", project.container(service), check=False)
            if ran.returncode == 0:
                pending.discard(service)
        if pending and time.monotonic() - began > timeout:
            raise AssertionError(f"never healthy: {sorted(pending)}\n{project.logs()}")
        if pending:
            time.sleep(1)
    return time.monotonic() - began


def test_a_job_walks_to_finished_and_indexed_through_the_containers(project: Project) -> None:
    began = time.monotonic()
    project.compose("up", "-d")
    healthy = wait_healthy(project)
    print(f"\n[compose] up, all {len(SERVICES)} healthy: {time.monotonic() - began:.1f} s")
    assert healthy < 120
    for service in SERVICES:  # as the engine itself records it
        state = podman(
            "inspect", "--format", "{{.State.Health.Status}}", project.container(service)
        )
        assert state.stdout.strip() == "healthy", service

    made = podman("exec", project.container("gateway"), "pipelinejobs", "keys", "create",
                  "--role", "admin", "--description", "compose test")  # fmt: skip
    auth = {"Authorization": f"Bearer {made.stdout.strip().splitlines()[-1]}"}

    def post(actor: str, body: dict) -> dict:
        url = f"{project.url}/actors/v2/{actor}/messages"
        answer = requests.post(url, params={"sync": "true"}, headers=auth, json=body, timeout=60)
        assert answer.status_code == 200, answer.text + project.logs()
        return dict(answer.json()["result"]["result"])

    app = {"id": "compose-app-0.1", "inputs": {}, "parameters": {}}
    post("pipelines-manager", {"name": "Compose check", "components": [app]})
    outputs = {"sample.tacc.abcde/table.csv": "a,b\n1,2\n", "notes.txt": "from the test"}
    job = post(
        "launcher-proxy",
        {
            "parameters": {"sample_id": "sample.tacc.abcde"},
            "job_definition": {"appId": app["id"], "outputs": outputs},
        },
    )
    uuid = job["uuid"]
    assert job["launch"]["backend"] == "inline"

    deadline = time.monotonic() + 60
    while True:
        record = requests.get(f"{project.url}/jobs/{uuid}", headers=auth, timeout=10).json()
        record = record["result"]
        if record["state"] == "FINISHED" and record.get("last_event") == "indexed":
            break
        assert time.monotonic() < deadline, f"{record['state']}\n{project.logs()}"
        time.sleep(0.2)
    events = [h["name"] for h in record["history"]]
    assert events[0] == "create" and events[-3:] == ["finish", "index", "indexed"]
    files = requests.get(f"{project.url}/jobs/{uuid}/files", headers=auth, timeout=10).json()
    indexed = sorted((f["relative_path"], f["level"]) for f in files["result"]["files"])
    # Written by the managers' container, listed by the indexer's: one archive volume.
    assert indexed == [("notes.txt", "1"), ("sample.tacc.abcde/table.csv", "1")]
    print(f"[compose] job FINISHED and indexed: {time.monotonic() - began:.1f} s after up")
