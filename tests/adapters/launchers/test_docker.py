"""The docker launcher, through the real Docker SDK, on each engine: fake and podman.

Every test here runs twice (``[fake]``, ``[podman]``; engines.py): against the fake
engine (fake_docker.py), which records what it was asked, and against a real podman
serving the Docker Engine API (tests/containers.py), where a container really runs
and reports what it was given from inside. Status callbacks go to a capture server.
The failure shapes only the fake can produce are in test_docker_fake.py.
"""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from pipelinejobs.adapters.launchers import supervisor
from pipelinejobs.adapters.launchers.docker import DockerLauncher
from pipelinejobs.domain import validation
from pipelinejobs.errors import LauncherError
from tests.adapters.launchers.docker_launches import (
    TOKEN,
    UUID,
    container,
    join_watchers,
    launch_of,
    run_to_end,
    wait_for,
)
from tests.adapters.launchers.engines import FakeUnderTest
from tests.adapters.launchers.fake_docker import Program
from tests.containers import PodmanService

# -- a run -----------------------------------------------------------------------------------


def test_a_container_runs_in_its_archive_with_its_coordinates(tmp_path, engine, capture):
    image = engine.image(Program(stdout=b"hello from the container\n", stderr=b"a warning\n"))
    pipeline = container(
        image,
        command=["python", "run.py", "${MODE}"],
        environment={"GREETING": "hola"},
        variables={"MODE": {"pattern": "--[a-z]+"}},
    )
    launch = launch_of(tmp_path, capture, pipeline, parameters={"MODE": "--fast"})

    started = run_to_end(engine.url, launch)

    seen = engine.seen(launch.archive_dir)
    assert seen.args == ["python", "run.py", "--fast"]  # argv, after the image's entrypoint
    assert seen.env == {
        "GREETING": "hola",
        "MODE": "--fast",
        "PIPELINEJOBS_JOB_UUID": UUID,
        "PIPELINEJOBS_JOB_TOKEN": TOKEN,
        "PIPELINEJOBS_CALLBACK_URL": launch.callback_base,
        "PIPELINEJOBS_ARCHIVE_PATH": "/products/job",
    }
    assert seen.workdir == "/archive"  # the bind-mounted archive (the probe wrote there)
    assert seen.user == f"{os.getuid()}:{os.getgid()}"  # the service owns what it writes
    assert started.pop("supervisor") != os.getpid()  # started and watched by its own process
    assert len(started.pop("container")) == 12
    assert started == {
        "backend": "docker",
        "callback": f"{capture.url}/actors/v2/jobs-manager/messages",
        "maxRunTime": None,
        "image": image,
    }
    assert engine.pulls() == 0  # present: not pulled
    assert capture.statuses() == ["RUNNING", "FINISHED"]
    for query, callback in capture.calls:
        assert query["uuid"] == UUID and query["token"] == TOKEN and query["x-nonce"] == "PJ_test"
        validation.validate("agave_job_callback", callback)
        assert callback["executionSystem"] == "docker"
        assert callback["archivePath"] == "/products/job"
    assert capture.calls[-1][1]["exitCode"] == 0
    assert launch.log_path.read_bytes() == b"hello from the container\na warning\n"
    assert engine.containers() == []  # removed


def test_an_entrypoint_and_a_variable_with_shell_text_arrive_as_argv(tmp_path, engine, capture):
    pipeline = container(
        engine.image(),
        entrypoint=["/bin/probe", "${TARGET}"],
        command=["${TARGET}"],
        variables={"TARGET": {}},
    )
    value = "$(rm -rf /archive); echo ${PIPELINEJOBS_JOB_TOKEN}"
    launch = launch_of(tmp_path, capture, pipeline, parameters={"TARGET": value})
    run_to_end(engine.url, launch)
    seen = engine.seen(launch.archive_dir)
    assert seen.args == [value, value]  # no shell came between
    assert seen.env["TARGET"] == value
    assert capture.statuses() == ["RUNNING", "FINISHED"]


def test_without_a_command_the_image_runs_its_own(tmp_path, engine, capture):
    launch = launch_of(tmp_path, capture, container(engine.image()))
    run_to_end(engine.url, launch)
    # The fake models no image configuration: the create asked for no command.
    own = [] if isinstance(engine, FakeUnderTest) else ["the-image-own-command"]
    assert engine.seen(launch.archive_dir).args == own
    assert capture.statuses() == ["RUNNING", "FINISHED"]


def test_the_log_is_appended_to(tmp_path, engine, capture):
    launch = launch_of(tmp_path, capture, container(engine.image(Program(stdout=b"second\n"))))
    launch.log_path.parent.mkdir(parents=True)
    launch.log_path.write_bytes(b"first\n")
    run_to_end(engine.url, launch)
    assert launch.log_path.read_bytes() == b"first\nsecond\n"


def test_a_missing_image_is_pulled_then_the_container_created(tmp_path, engine, capture):
    image = engine.pullable(Program(stdout=b"pulled and ran\n"))
    launch = launch_of(tmp_path, capture, container(image))

    run_to_end(engine.url, launch)

    assert engine.pulls() == 1
    assert capture.statuses() == ["RUNNING", "FINISHED"]
    assert launch.log_path.read_bytes() == b"pulled and ran\n"
    if isinstance(engine, FakeUnderTest):  # what the SDK asked, in order
        assert [(c.method, c.path.split("/")[1]) for c in engine.fake.calls[:3]] == [
            ("POST", "containers"),  # 404 No such image
            ("POST", "images"),  # the pull, its progress read to the end
            ("POST", "containers"),  # the create again
        ]
        (pull,) = engine.fake.requested("POST", "/images/create")
        assert pull.query == {"fromImage": "example/tacobot", "tag": image.split(":")[1]}


def test_an_image_that_cannot_be_pulled_is_a_clear_error(tmp_path, engine, capture):
    image, reason = engine.unpullable()
    with pytest.raises(LauncherError) as info:
        DockerLauncher(engine.url).launch(launch_of(tmp_path, capture, container(image)))
    message = info.value.message
    assert message.startswith(f"the Docker engine at {engine.url} ")
    assert image in message and reason in message  # the engine's own reason
    assert capture.calls == [] and engine.containers() == []


# -- how it ends -----------------------------------------------------------------------------


def test_an_exit_code_3_fails_the_job_with_it(tmp_path, engine, capture):
    launch = launch_of(tmp_path, capture, container(engine.image(Program(3, stderr=b"boom\n"))))

    run_to_end(engine.url, launch)

    assert capture.statuses() == ["RUNNING", "FAILED"]
    body = capture.calls[-1][1]
    validation.validate("agave_job_callback", body)
    assert body["exitCode"] == 3 and "code 3" in body["error"]
    assert launch.log_path.read_bytes() == b"boom\n"
    assert engine.containers() == []


def test_max_run_time_kills_the_container(tmp_path, engine, capture):
    image = engine.image(Program(forever=True, stdout=b"working...\n"))
    launch = launch_of(tmp_path, capture, container(image), maxRunTime="00:00:01")

    began = time.monotonic()
    started = run_to_end(engine.url, launch)

    assert started["maxRunTime"] == 1.0
    assert time.monotonic() - began < 15  # killed, not left to its 600 s sleep
    assert capture.statuses() == ["RUNNING", "FAILED"]
    body = capture.calls[-1][1]
    validation.validate("agave_job_callback", body)
    assert "maxRunTime 00:00:01 exceeded" in body["error"] and body["exitCode"] is None
    assert launch.log_path.read_bytes() == b"working...\n"
    assert engine.containers() == []


def test_a_stop_request_removes_the_running_container_within_2s(tmp_path, engine, capture):
    image = engine.image(Program(forever=True, stdout=b"working...\n"))
    launch = launch_of(tmp_path, capture, container(image), launch_id="exec-c")
    DockerLauncher(engine.url).launch(launch)
    wait_for(lambda: capture.statuses() == ["RUNNING"], "RUNNING")
    assert len(engine.containers()) == 1  # labelled with its job

    asked = time.monotonic()
    assert supervisor.request_stop(launch.log_path.parent, UUID, "cancelled") == ["exec-c"]
    wait_for(lambda: engine.containers() == [], "the container to be removed", timeout=10)
    gone = time.monotonic() - asked
    join_watchers()

    print(f"\n[{engine.name}] stop requested -> container gone: {gone:.2f} s")
    assert gone < 2.0
    assert capture.statuses() == ["RUNNING", "STOPPED"]
    query, body = capture.calls[-1]
    assert query["event"] == "update"
    assert body["error"] == "the compute was stopped on request: cancelled"
    assert body["exitCode"] == 137  # SIGKILL
    assert launch.log_path.read_bytes() == b"working...\n"


def test_a_container_whose_supervisor_was_lost_is_reaped(tmp_path, engine, capture):
    image = engine.image(Program(forever=True, stdout=b"half done\n"))
    launch = launch_of(tmp_path, capture, container(image), launch_id="exec-l")
    started = DockerLauncher(engine.url).launch(launch)
    wait_for(lambda: capture.statuses() == ["RUNNING"], "RUNNING")
    os.kill(started["supervisor"], signal.SIGKILL)  # the machine's restart, as it looks here
    join_watchers()
    assert len(engine.containers()) == 1  # nobody watches it now

    ((uuid, marker, record),) = supervisor.lost_launches(launch.log_path.parent)
    assert uuid == UUID and record["launcher"] == "docker"
    assert supervisor.claim_lost(marker, record, "lost in the test")

    assert engine.containers() == []
    assert launch.log_path.read_bytes() == b"half done\n"  # its output kept
    assert json.loads(marker.read_text())["state"] == "lost"
    assert not supervisor.claim_lost(marker, record, "again")  # one reaper wins


@pytest.mark.parametrize(
    ("setting", "fake_user", "real_user"),
    [
        ("", f"{os.getuid()}:{os.getgid()}", f"{os.getuid()}:{os.getgid()}"),
        ("image", None, "0:0"),  # the test image has no USER: root
        ("1234:55", "1234:55", "1234:55"),
    ],
)
def test_who_the_container_runs_as(tmp_path, engine, capture, setting, fake_user, real_user):
    launch = launch_of(tmp_path, capture, container(engine.image()))
    launch.archive_dir.mkdir(parents=True)
    launch.archive_dir.chmod(0o777)  # so uid 1234 can leave its report there
    run_to_end(engine.url, launch, user=setting)
    user = fake_user if isinstance(engine, FakeUnderTest) else real_user
    assert engine.seen(launch.archive_dir).user == user
    assert capture.statuses() == ["RUNNING", "FINISHED"]


# -- the engine lost (real only: the fake's shape is in test_docker_fake.py) -----------------


def test_an_engine_killed_while_waiting_fails_the_job_and_its_container_goes_when_back(
    tmp_path, podman_service: PodmanService, capture
):
    # An engine of its own (on the same image store), killed mid-wait: SIGKILL, so
    # no goodbye on the wait's connection. Then started again on the same socket.
    workdir = tmp_path / "engine"
    workdir.mkdir()
    conf = podman_service.workdir / "registries.conf"
    lost = PodmanService(workdir, conf)
    back = None
    try:
        image = podman_service.program_image(forever=True, stdout=b"still here\n")
        launch = launch_of(tmp_path, capture, container(image))
        DockerLauncher(lost.url).launch(launch)
        wait_for(lambda: capture.statuses() == ["RUNNING"], "RUNNING")
        os.killpg(lost.proc.pid, signal.SIGKILL)
        wait_for(lambda: capture.statuses() == ["RUNNING", "FAILED"], "FAILED", timeout=30)

        error = capture.calls[-1][1]["error"]
        assert error.startswith("the job could not be watched to its end: the Docker engine")
        assert "is not reachable (waiting for container" in error
        # podman's containers outlive its API service: it still runs, unwatched.
        assert len(podman_service.job_containers()) == 1

        back = PodmanService(workdir, conf)  # the engine restarted
        join_watchers()  # the supervisor tried again until it could, then ended
        assert podman_service.job_containers() == []
        assert launch.log_path.read_bytes() == b"still here\n"  # its output kept
    finally:
        for service in (lost, back):
            if service is not None:
                service.close()
