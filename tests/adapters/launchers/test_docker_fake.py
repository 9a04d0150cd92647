"""The docker launcher against the fake engine only: what a real one cannot be made to do.

The same launcher's behaviour on both engines is in test_docker.py. Here are the
shapes only fake_docker.py produces on demand — a refused start, a wait that times
out before any header, a wait connection dropped by an engine that stays up, an
engine not listening — and the checks that need no engine at all.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from pipelinejobs.access.nonces import Nonces
from pipelinejobs.adapters.launchers.base import Launch
from pipelinejobs.adapters.launchers.docker import DockerLauncher, image_of
from pipelinejobs.adapters.launchers.watched import WatchedLauncher
from pipelinejobs.domain import validation
from pipelinejobs.errors import (
    LauncherError,
    LauncherUnavailable,
    PipelineJobsError,
    ValidationError,
    http_status,
)
from tests.adapters.launchers.docker_launches import (
    IMAGE,
    PIPELINE,
    closed_port,
    launch_of,
)
from tests.adapters.launchers.docker_launches import run_to_end as run_on
from tests.adapters.launchers.fake_docker import FakeEngine, Program
from tests.support import make_runtime, stub


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    """The fake engine itself (test_docker.py's ``engine`` is either engine)."""
    fake = FakeEngine()
    yield fake
    fake.close()
    assert fake.unknown == [], "the SDK called an endpoint the fake does not serve"


def run_to_end(engine: FakeEngine, launch: Launch) -> dict[str, Any]:
    return run_on(engine.url, launch)


# -- a run -----------------------------------------------------------------------------------


def test_a_container_that_cannot_start_is_removed(tmp_path, engine, capture):
    engine.images.add(IMAGE)
    engine.programs[IMAGE] = Program(start_error="error mounting /archive: permission denied")
    with pytest.raises(LauncherError, match="refused starting container .*permission denied"):
        DockerLauncher(engine.url).launch(launch_of(tmp_path, capture))
    assert len(engine.requested("DELETE", r"/containers/\w+")) == 1
    assert engine.containers == {}
    assert capture.calls == []


# -- how it ends -----------------------------------------------------------------------------


@pytest.mark.parametrize("headers_first", [True, False], ids=["engine-like", "headers-late"])
def test_max_run_time_kills_the_container(tmp_path, capture, headers_first):
    # The real engine answers a wait with its headers at once, so the SDK times out
    # reading the body; "headers-late" covers a timeout before any answer.
    engine = FakeEngine(headers_first=headers_first)
    try:
        engine.images.add(IMAGE)
        engine.programs[IMAGE] = Program(forever=True, stdout=b"working...\n")
        launch = launch_of(tmp_path, capture, maxRunTime="00:00:01")

        started = run_to_end(engine, launch)

        assert started["maxRunTime"] == 1.0
        assert len(engine.requested("POST", r"/containers/\w+/kill")) == 1
        (wait,) = engine.requested("POST", r"/containers/\w+/wait")
        assert capture.statuses() == ["RUNNING", "FAILED"]
        body = capture.calls[-1][1]
        validation.validate("agave_job_callback", body)
        assert "maxRunTime 00:00:01 exceeded" in body["error"] and body["exitCode"] is None
        assert launch.log_path.read_bytes() == b"working...\n"
        assert engine.containers == {}
        assert engine.unknown == []
    finally:
        engine.close()


def test_an_engine_lost_while_waiting_fails_the_job(tmp_path, engine, capture):
    engine.images.add(IMAGE)
    engine.programs[IMAGE] = Program(forever=True)
    engine.drop_waits = True

    run_to_end(engine, launch_of(tmp_path, capture))

    assert capture.statuses() == ["RUNNING", "FAILED"]
    body = capture.calls[-1][1]
    assert body["error"].startswith("the job could not be watched to its end: the Docker engine")
    assert "is not reachable (waiting for container" in body["error"]
    assert engine.containers == {}  # still removed (force: it was running)


# -- what it runs ----------------------------------------------------------------------------

APP = {"id": "tacobot-0.1", "inputs": {}, "parameters": {"CONTAINER_IMAGE": "sd2e/tacobot:0.1"}}
COMMAND = {"id": "step-1", "command": ["python3", "step.py"]}
DIGEST = "a" * 64


@pytest.mark.parametrize(("definition", "components", "image"), [
    ({}, [{"repo": "ex/c:1"}], "ex/c:1"),
    ({}, [{"repo": "ex/c:1", "hash": f"sha256:{DIGEST}"}], f"ex/c:1@sha256:{DIGEST}"),
    ({}, [{"repo": "ex/c", "hash": DIGEST}], f"ex/c@sha256:{DIGEST}"),
    ({}, [APP, {"repo": "ex/c:1"}], "ex/c:1"),  # the container, not the app's image
    ({"appId": "unknown"}, [APP, {"repo": "ex/c:1"}], "ex/c:1"),
    ({"appId": "tacobot-0.1"}, [APP, {"repo": "ex/c:1"}], None),  # the app: runs elsewhere
    ({}, [APP], None),  # an Agave app's CONTAINER_IMAGE is not run here
    ({}, [COMMAND], None),
    ({}, [{"id": "actor", "repo": "ex/actor:1"}], None),  # an Abaco actor is not run
    ({}, [{"id": "app", "inputs": {}, "parameters": {}}], None),
    ({}, [{"uri": "https://example.org/service"}], None),
])  # fmt: skip
def test_image_choice(definition, components, image):
    assert image_of(definition, {"components": components}) == image


@pytest.mark.parametrize(("definition", "components", "path"), [
    ({}, [{"uri": "https://example.org/service"}], "job_definition/launcher"),
    ({}, [APP], "job_definition/launcher"),
    ({}, [COMMAND], "job_definition/launcher"),
    ({"image": "alpine:3.20"}, [{"repo": "ex/c:1"}], "job_definition/image"),
    ({"image": "alpine:3.20"}, [APP], "job_definition/image"),
    ({"command": ["sh", "-c", "id"]}, [{"repo": "ex/c:1"}], "job_definition/command"),
    ({"entrypoint": ["sh"]}, [{"repo": "ex/c:1"}], "job_definition/entrypoint"),
    ({"environment": {"A": "1"}}, [{"repo": "ex/c:1"}], "job_definition/environment"),
    ({"parameters": {"A": "1"}}, [{"repo": "ex/c:1"}], "job_definition/parameters/A"),
    ({"maxRunTime": "1:00"}, [{"repo": "ex/c:1"}], "job_definition/maxRunTime"),
])  # fmt: skip
def test_bad_launches_are_refused_before_anything_starts(definition, components, path):
    # check() needs no engine: the URL is never contacted.
    launcher = DockerLauncher(f"tcp://127.0.0.1:{closed_port()}")
    with pytest.raises(ValidationError) as info:
        launcher.check(definition, {"components": components})
    assert info.value.detail["path"] == path


def test_a_launch_without_a_container_component_asks_nothing_of_the_engine(
    tmp_path, engine, capture
):
    with pytest.raises(ValidationError) as info:
        DockerLauncher(engine.url).launch(launch_of(tmp_path, capture, pipeline={}))
    assert info.value.detail["path"] == "job_definition/launcher"
    assert engine.calls == [] and capture.calls == []


# -- when the engine is not there ------------------------------------------------------------


@pytest.mark.parametrize(("url", "reason"), [
    ("tcp://127.0.0.1:{port}", "Connection refused"),
    # docker-py's unix transport does not close a socket whose connect failed; the
    # ResourceWarning when it is collected is the SDK's, not ours.
    pytest.param(
        "unix://{tmp}/no-docker.sock",
        "No such file or directory",
        marks=pytest.mark.filterwarnings("ignore::ResourceWarning"),
    ),
])  # fmt: skip
def test_an_unreachable_engine_is_a_clear_error(tmp_path, capture, url, reason):
    url = url.format(port=closed_port(), tmp=tmp_path)

    message = refusal(DockerLauncher(url), launch_of(tmp_path, capture))
    gc.collect()  # while the filter holds: the SDK's leaked socket goes now

    assert message.startswith(f"the Docker engine at {url} is not reachable")
    assert reason in message
    assert capture.calls == [] and WatchedLauncher.watchers == []


def refusal(launcher: DockerLauncher, launch: Launch) -> str:
    """The message of the LauncherUnavailable the launch raises (and nothing kept of it)."""
    with pytest.raises(LauncherUnavailable) as info:
        launcher.launch(launch)
    assert isinstance(info.value, PipelineJobsError) and http_status(info.value) == 503
    return info.value.message


def test_a_malformed_engine_url_is_a_clear_error(tmp_path, capture):
    with pytest.raises(LauncherError, match="the Docker engine at ftp://nowhere failed connecting"):
        DockerLauncher("ftp://nowhere").launch(launch_of(tmp_path, capture))


def test_the_launcher_proxy_fails_the_job_with_the_engines_reason(tmp_path):
    url = f"tcp://127.0.0.1:{closed_port()}"
    rt = make_runtime(tmp_path, launcher={"backend": "auto", "docker_url": url})
    try:
        registered = rt.submit("pipelines-manager", {"name": "Dockered", **PIPELINE}, role="admin")
        stub(rt).join()
        pipeline = rt.executions.get(registered["id"])["result"]["uuid"]
        execution = rt.submit(
            "launcher-proxy",
            {
                "pipeline_uuid": pipeline,
                "parameters": {"sample_id": "sample.tacc.abcde"},
                "job_definition": {"appId": "dockered"},
            },
        )
        stub(rt).join()

        execution = rt.executions.get(execution["id"])
        assert execution["status"] == "ERROR"
        assert execution["error"]["error"] == "LauncherUnavailable"
        (job,) = rt.store.find("jobs", {}, limit=2).items
        assert job["state"] == "FAILED"
        assert job["launch"]["backend"] == "docker"
        reason = rt.jobs.record(job["uuid"])["history"][-1]["data"]["reason"]
        assert reason.startswith(f"the Docker engine at {url} is not reachable")
        assert Nonces(rt.store).list("jobs-manager") == []  # its callback nonce went with it
    finally:
        rt.close()
