"""The docker launcher, through the real Docker SDK, against a fake engine.

The engine is tests/adapters/launchers/fake_docker.py (HTTP on 127.0.0.1); status
callbacks go to a capture server. Each test launches, waits for the supervisors,
and reads what the engine was asked and what was reported.
"""

from __future__ import annotations

import gc
import os
import socket
from collections.abc import Iterator
from pathlib import Path
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
from tests.adapters.launchers.callbacks import Capture
from tests.adapters.launchers.fake_docker import FakeEngine, Program
from tests.support import make_runtime, stub

UUID = "1073f4ff-c2b9-5190-bd9a-e6a406d9796a"
TOKEN = "0dc73dc3ff39b49a"
IMAGE = "example/tacobot:0.1"
PIPELINE = {"components": [{"repo": IMAGE}]}


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    fake = FakeEngine()
    yield fake
    fake.close()
    assert fake.unknown == [], "the SDK called an endpoint the fake does not serve"


@pytest.fixture
def capture() -> Iterator[Capture]:
    server = Capture()
    yield server
    server.close()


def container(**options: Any) -> dict[str, Any]:
    """A pipeline whose container component runs IMAGE with ``options``."""
    return {"components": [{"repo": IMAGE, **({"options": options} if options else {})}]}


def launch_of(
    tmp_path: Path, capture: Capture, pipeline: dict[str, Any] | None = None, **definition: Any
) -> Launch:
    base = (
        f"{capture.url}/actors/v2/jobs-manager/messages?uuid={UUID}&token={TOKEN}&x-nonce=PJ_test"
    )
    return Launch(
        job={"uuid": UUID, "archive_system": "test-system"},
        pipeline=PIPELINE if pipeline is None else pipeline,
        job_definition={"appId": "tacobot-0.1", **definition},
        archive_path="/products/job",
        archive_dir=tmp_path / "archive" / "products" / "job",
        token=TOKEN,
        report=lambda status, body: "unused",
        callback_base=base,
        log_path=tmp_path / "logs" / f"{UUID}.log",
    )


def run_to_end(engine: FakeEngine, launch: Launch) -> dict[str, Any]:
    started = DockerLauncher(engine.url).launch(launch)
    for thread in list(WatchedLauncher.watchers):
        thread.join(timeout=60)
        assert not thread.is_alive()
    return started


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- a run -----------------------------------------------------------------------------------


def test_a_container_runs_in_its_archive_with_its_coordinates(tmp_path, engine, capture):
    engine.images.add(IMAGE)
    engine.programs[IMAGE] = Program(stdout=b"hello from the container\n", stderr=b"a warning\n")
    pipeline = container(
        command=["python", "run.py", "${MODE}"],
        environment={"GREETING": "hola"},
        variables={"MODE": {"pattern": "--[a-z]+"}},
    )
    launch = launch_of(tmp_path, capture, pipeline, parameters={"MODE": "--fast"})

    started = run_to_end(engine, launch)

    (create,) = engine.requested("POST", "/containers/create")
    body = create.body
    assert body["Image"] == IMAGE
    assert body["Cmd"] == ["python", "run.py", "--fast"]
    assert "Entrypoint" not in body or body["Entrypoint"] is None  # the image's own
    assert sorted(body["Env"]) == sorted(
        [
            "GREETING=hola",
            "MODE=--fast",
            f"PIPELINEJOBS_JOB_UUID={UUID}",
            f"PIPELINEJOBS_JOB_TOKEN={TOKEN}",
            f"PIPELINEJOBS_CALLBACK_URL={launch.callback_base}",
            "PIPELINEJOBS_ARCHIVE_PATH=/products/job",
        ]
    )
    assert body["HostConfig"]["Binds"] == [f"{launch.archive_dir}:/archive:rw"]
    assert body["WorkingDir"] == "/archive"
    assert body["Labels"] == {"pipelinejobs.job": UUID}
    assert body["User"] == f"{os.getuid()}:{os.getgid()}"  # the service owns what it writes
    assert not body.get("Tty") and not body.get("AttachStdout")  # detached
    assert launch.archive_dir.is_dir()  # made before the engine mounts it (as root)

    container_id = engine.requested("POST", r"/containers/\w+/start")[0].path.split("/")[2]
    assert started.pop("supervisor") != os.getpid()  # started and watched by its own process
    assert started == {
        "backend": "docker",
        "callback": f"{capture.url}/actors/v2/jobs-manager/messages",
        "maxRunTime": None,
        "container": container_id[:12],
        "image": IMAGE,
    }
    assert engine.requested("POST", "/images/create") == []  # present: not pulled
    assert capture.statuses() == ["RUNNING", "FINISHED"]
    for query, callback in capture.calls:
        assert query["uuid"] == UUID and query["token"] == TOKEN and query["x-nonce"] == "PJ_test"
        validation.validate("agave_job_callback", callback)
        assert callback["executionSystem"] == "docker"
        assert callback["archivePath"] == "/products/job"
    assert capture.calls[-1][1]["exitCode"] == 0
    assert launch.log_path.read_bytes() == b"hello from the container\na warning\n"
    (delete,) = engine.requested("DELETE", rf"/containers/{container_id}")
    assert engine.containers == {}


def test_an_entrypoint_and_a_variable_with_shell_text_arrive_as_argv(tmp_path, engine, capture):
    engine.images.add(IMAGE)
    pipeline = container(
        entrypoint=["/usr/bin/env", "${TARGET}"], command=["${TARGET}"], variables={"TARGET": {}}
    )
    value = "$(rm -rf /archive); echo ${PIPELINEJOBS_JOB_TOKEN}"
    run_to_end(engine, launch_of(tmp_path, capture, pipeline, parameters={"TARGET": value}))
    (create,) = engine.requested("POST", "/containers/create")
    assert create.body["Entrypoint"] == ["/usr/bin/env", value]
    assert create.body["Cmd"] == [value]
    assert f"TARGET={value}" in create.body["Env"]


def test_without_a_command_the_image_runs_its_own(tmp_path, engine, capture):
    engine.images.add(IMAGE)
    run_to_end(engine, launch_of(tmp_path, capture))
    (create,) = engine.requested("POST", "/containers/create")
    assert create.body.get("Cmd") is None
    assert capture.statuses() == ["RUNNING", "FINISHED"]


def test_the_log_is_appended_to(tmp_path, engine, capture):
    engine.images.add(IMAGE)
    engine.programs[IMAGE] = Program(stdout=b"second\n")
    launch = launch_of(tmp_path, capture)
    launch.log_path.parent.mkdir(parents=True)
    launch.log_path.write_bytes(b"first\n")
    run_to_end(engine, launch)
    assert launch.log_path.read_bytes() == b"first\nsecond\n"


def test_a_missing_image_is_pulled_then_the_container_created(tmp_path, engine, capture):
    run_to_end(engine, launch_of(tmp_path, capture))

    assert [(c.method, c.path.split("/")[1]) for c in engine.calls[:4]] == [
        ("POST", "containers"),  # 404 No such image
        ("POST", "images"),  # the pull
        ("GET", "images"),  # the SDK inspects what it pulled
        ("POST", "containers"),  # the create again
    ]
    (pull,) = engine.requested("POST", "/images/create")
    assert pull.query == {"fromImage": "example/tacobot", "tag": "0.1"}
    assert len(engine.requested("POST", "/containers/create")) == 2
    assert capture.statuses() == ["RUNNING", "FINISHED"]


def test_an_image_that_cannot_be_pulled_is_a_clear_error(tmp_path, engine, capture):
    engine.unpullable.add(IMAGE)
    with pytest.raises(LauncherError, match="pull access denied for example/tacobot") as info:
        DockerLauncher(engine.url).launch(launch_of(tmp_path, capture))
    assert engine.url in info.value.message
    assert capture.calls == [] and WatchedLauncher.watchers == []


def test_a_container_that_cannot_start_is_removed(tmp_path, engine, capture):
    engine.images.add(IMAGE)
    engine.programs[IMAGE] = Program(start_error="error mounting /archive: permission denied")
    with pytest.raises(LauncherError, match="refused starting container .*permission denied"):
        DockerLauncher(engine.url).launch(launch_of(tmp_path, capture))
    assert len(engine.requested("DELETE", r"/containers/\w+")) == 1
    assert engine.containers == {}
    assert capture.calls == []


# -- how it ends -----------------------------------------------------------------------------


def test_an_exit_code_3_fails_the_job_with_it(tmp_path, engine, capture):
    engine.images.add(IMAGE)
    engine.programs[IMAGE] = Program(exit_code=3, stderr=b"boom\n")
    launch = launch_of(tmp_path, capture)

    run_to_end(engine, launch)

    assert capture.statuses() == ["RUNNING", "FAILED"]
    body = capture.calls[-1][1]
    validation.validate("agave_job_callback", body)
    assert body["exitCode"] == 3 and "code 3" in body["error"]
    assert launch.log_path.read_bytes() == b"boom\n"
    assert engine.containers == {}


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


@pytest.mark.parametrize(
    ("setting", "user"),
    [("", f"{os.getuid()}:{os.getgid()}"), ("image", None), ("1234:55", "1234:55")],
)
def test_who_the_container_runs_as(tmp_path, engine, capture, setting, user):
    engine.images.add(IMAGE)
    engine.programs[IMAGE] = Program()
    launcher = DockerLauncher(engine.url, user=setting)
    launcher.launch(launch_of(tmp_path, capture))
    for thread in list(WatchedLauncher.watchers):
        thread.join(timeout=60)
    (create,) = engine.requested("POST", "/containers/create")
    assert (create.body.get("User") or None) == user
