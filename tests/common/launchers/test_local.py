"""The local launcher: argv subprocess, its environment, callbacks over HTTP, maxRunTime."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from common import schemas
from common.errors import ValidationError
from common.launchers.base import Launch
from common.launchers.local import LocalLauncher
from common.launchers.watched import WatchedLauncher
from tests.common.launchers.callbacks import Capture

UUID = "1073f4ff-c2b9-5190-bd9a-e6a406d9796a"
TOKEN = "0dc73dc3ff39b49a"


@pytest.fixture
def capture() -> Iterator[Capture]:
    server = Capture()
    yield server
    server.close()


def launch_of(tmp_path: Path, capture: Capture, **definition: object) -> Launch:
    base = (
        f"{capture.url}/actors/v2/jobs-manager/messages?uuid={UUID}&token={TOKEN}&x-nonce=PJ_test"
    )
    archive = tmp_path / "archive" / "products" / "job"
    return Launch(
        job={"uuid": UUID, "archive_system": "test-system"},
        pipeline={},
        job_definition={"appId": "local-app", **definition},
        archive_path="/products/job",
        archive_dir=archive,
        token=TOKEN,
        report=lambda status, body: "unused",
        callback_base=base,
        log_path=tmp_path / "logs" / f"{UUID}.log",
    )


def run_to_end(launch: Launch) -> dict:
    started = LocalLauncher().launch(launch)
    for thread in list(WatchedLauncher.watchers):
        thread.join(timeout=60)
        assert not thread.is_alive()
    return started


def test_a_command_runs_in_its_archive_with_its_coordinates(tmp_path, capture):
    script = (
        "import os, pathlib; pathlib.Path('out.csv').write_text('a,b'); "
        "print(os.environ['PIPELINEJOBS_JOB_UUID'], os.environ['PIPELINEJOBS_JOB_TOKEN'],"
        " os.environ['PIPELINEJOBS_CALLBACK_URL'] != '', os.environ['GREETING'],"
        " os.environ.get('SECRET_OF_THE_WORKER'), os.getcwd())"
    )
    launch = launch_of(
        tmp_path, capture, command=[sys.executable, "-c", script], environment={"GREETING": "hola"}
    )
    started = run_to_end(launch)
    assert started["backend"] == "local" and started["pid"] > 0
    assert "x-nonce" not in started["callback"] and TOKEN not in started["callback"]
    assert (launch.archive_dir / "out.csv").read_text() == "a,b"
    log = launch.log_path.read_text()
    assert f"{UUID} {TOKEN} True hola None {launch.archive_dir}" in log
    assert capture.statuses() == ["RUNNING", "FINISHED"]
    for query, body in capture.calls:
        assert query["uuid"] == UUID and query["token"] == TOKEN
        assert query["x-nonce"] == "PJ_test"
        schemas.validate("agave_job_callback", body)
        assert body["archivePath"] == "/products/job"
    assert capture.calls[-1][1]["exitCode"] == 0


def test_no_shell_interprets_the_argv(tmp_path, capture):
    launch = launch_of(
        tmp_path,
        capture,
        command=[
            sys.executable,
            "-c",
            "import sys; print(sys.argv[1:])",
            "$(touch pwned)",
            "; rm -rf /",
        ],
    )
    run_to_end(launch)
    assert "['$(touch pwned)', '; rm -rf /']" in launch.log_path.read_text()
    assert not (launch.archive_dir / "pwned").exists()


def test_a_failing_command_reports_its_exit_code(tmp_path, capture):
    launch = launch_of(
        tmp_path, capture, command=[sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
    )
    run_to_end(launch)
    assert capture.statuses() == ["RUNNING", "FAILED"]
    body = capture.calls[-1][1]
    assert body["exitCode"] == 3 and "code 3" in body["error"]
    assert "boom" in launch.log_path.read_text()


def test_max_run_time_kills_the_process_group(tmp_path, capture):
    # The child starts a grandchild; both must die when maxRunTime is up.
    script = (
        "import subprocess, sys, time; "
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)']); "
        "open('grandchild.pid', 'w').write(str(p.pid)); time.sleep(600)"
    )
    launch = launch_of(
        tmp_path, capture, command=[sys.executable, "-c", script], maxRunTime="00:00:01"
    )
    run_to_end(launch)
    assert capture.statuses() == ["RUNNING", "FAILED"]
    body = capture.calls[-1][1]
    assert "maxRunTime 00:00:01 exceeded" in body["error"] and body["exitCode"] is None
    grandchild = int((launch.archive_dir / "grandchild.pid").read_text())
    assert (
        not Path(f"/proc/{grandchild}").exists()
        or "Z" in Path(f"/proc/{grandchild}/stat").read_text().split()[2]
    )


@pytest.mark.parametrize(("definition", "path"), [
    ({}, "job_definition/command"),
    ({"command": "echo hi"}, "job_definition/command"),
    ({"command": []}, "job_definition/command"),
    ({"command": ["echo", 3]}, "job_definition/command"),
    ({"command": ["echo"], "environment": {"A": 1}}, "job_definition/environment"),
])  # fmt: skip
def test_bad_definitions_are_refused_before_anything_starts(definition, path):
    with pytest.raises(ValidationError) as info:
        LocalLauncher().check(definition, {})
    assert info.value.detail["path"] == path


def test_a_missing_program_is_a_clear_error(tmp_path, capture):
    launch = launch_of(tmp_path, capture, command=["/no/such/program"])
    with pytest.raises(ValidationError, match="cannot start '/no/such/program'"):
        LocalLauncher().launch(launch)
    assert capture.calls == []


@pytest.mark.parametrize("bad", ["1:00", "aa:bb:cc", "00:00:00", "01:60:00"])
def test_bad_max_run_time_is_refused(tmp_path, capture, bad):
    launch = launch_of(tmp_path, capture, command=["true"], maxRunTime=bad)
    with pytest.raises(ValidationError) as info:
        LocalLauncher().launch(launch)
    assert info.value.detail["path"] == "job_definition/maxRunTime"
