"""The supervisor: a watched job's end is reported even when its launcher is gone, and
a launch redelivered is found, not started twice."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelinejobs.adapters.launchers import supervisor
from pipelinejobs.adapters.launchers.base import Launch
from pipelinejobs.adapters.launchers.local import LocalLauncher
from pipelinejobs.adapters.launchers.watched import WatchedLauncher
from pipelinejobs.errors import LauncherError
from tests.adapters.launchers.callbacks import Capture

UUID = "1073f4ff-c2b9-5190-bd9a-e6a406d9796a"
TOKEN = "0dc73dc3ff39b49a"
PIPELINE_UUID = "1064aaf1-459c-5e42-820d-b822aa4b3990"
ROOT = Path(__file__).resolve().parents[3]
#: These tests run as root, so their launchers say root may run jobs.
RUN_AS = "root"


@pytest.fixture
def capture() -> Iterator[Capture]:
    server = Capture()
    yield server
    server.close()


def launch_of(
    tmp_path: Path, capture: Capture, launch_id: str = "", *, command: list[str], **definition
) -> Launch:
    """A launch of a pipeline whose command component runs ``command``."""
    base = f"{capture.url}/actors/v2/jobs-manager/messages?uuid={UUID}&token={TOKEN}&x-nonce=PJ_t"
    return Launch(
        job={"uuid": UUID, "archive_system": "test-system"},
        pipeline={"uuid": PIPELINE_UUID, "components": [{"id": "local-app", "command": command}]},
        job_definition={"appId": "local-app", **definition},
        archive_path="/products/job",
        archive_dir=tmp_path / "archive",
        token=TOKEN,
        report=lambda status, body: "unused",
        callback_base=base,
        log_path=tmp_path / "logs" / f"{UUID}.log",
        launch_id=launch_id,
    )


def join_watchers() -> None:
    for thread in list(WatchedLauncher.watchers):
        thread.join(timeout=60)
        assert not thread.is_alive()


def wait_for(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_end_is_reported_after_the_launching_process_is_killed(tmp_path, capture):
    # The command waits until its launcher is dead, then finishes: only a watcher
    # that outlived the launcher can report FINISHED.
    gone = tmp_path / "launcher.gone"
    command = [sys.executable, "-c",
               f"import pathlib, time\nwhile not pathlib.Path({str(gone)!r}).exists(): "
               "time.sleep(0.05)\nprint('done after the launcher died')"]  # fmt: skip
    launch = launch_of(tmp_path, capture, "exec-killed", command=command)
    script = (
        "import json, os, signal, sys\n"
        "from pipelinejobs.adapters.launchers.base import Launch\n"
        "from pipelinejobs.adapters.launchers.local import LocalLauncher\n"
        "launch = Launch.from_dict(json.loads(sys.stdin.read()), report=None)\n"
        "print(json.dumps(LocalLauncher(run_as='root').launch(launch)), flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    launcher = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(launch.to_dict()),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert launcher.returncode == -9, launcher.stderr  # SIGKILLed, watcher threads and all
    started = json.loads(launcher.stdout)
    gone.touch()

    wait_for(lambda: capture.statuses()[-1:] == ["FINISHED"])
    assert capture.statuses() == ["RUNNING", "FINISHED"]
    assert capture.calls[-1][1]["exitCode"] == 0
    assert "done after the launcher died" in launch.log_path.read_text()
    marker = tmp_path / "logs" / f"{UUID}.exec-killed.launch"
    wait_for(lambda: json.loads(marker.read_text())["state"] == "ended")
    record = json.loads(marker.read_text())
    assert record["started"]["pid"] == started["pid"] and record["reported"] == "FINISHED"


def test_a_redelivered_launch_finds_the_first_one(tmp_path, capture):
    command = [sys.executable, "-c", "open('runs', 'a').write('ran\\n')"]
    first = LocalLauncher(run_as=RUN_AS).launch(
        launch_of(tmp_path, capture, "exec-1", command=command)
    )
    again = LocalLauncher(run_as=RUN_AS).launch(
        launch_of(tmp_path, capture, "exec-1", command=command)
    )
    join_watchers()

    assert (tmp_path / "archive" / "runs").read_text() == "ran\n"  # started once
    assert again["already_started"] is True
    assert again["pid"] == first["pid"] and again["supervisor"] == first["supervisor"]
    assert capture.statuses() == ["RUNNING", "FINISHED"]  # and reported once


def test_a_new_launch_of_the_same_job_starts_again(tmp_path, capture):
    command = [sys.executable, "-c", "open('runs', 'a').write('ran\\n')"]
    LocalLauncher(run_as=RUN_AS).launch(launch_of(tmp_path, capture, "exec-1", command=command))
    join_watchers()
    second = LocalLauncher(run_as=RUN_AS).launch(
        launch_of(tmp_path, capture, "exec-2", command=command)
    )
    join_watchers()

    assert (tmp_path / "archive" / "runs").read_text() == "ran\nran\n"
    assert "already_started" not in second
    assert capture.statuses() == ["RUNNING", "FINISHED", "RUNNING", "FINISHED"]


def test_a_launch_that_cannot_start_can_be_tried_again(tmp_path, capture):
    missing = launch_of(tmp_path, capture, "exec-1", command=[str(tmp_path / "prog")])
    with pytest.raises(LauncherError, match="cannot start") as info:
        LocalLauncher(run_as=RUN_AS).launch(missing)
    assert info.value.detail["pipeline_uuid"] == PIPELINE_UUID  # as the supervisor said it
    assert not list((tmp_path / "logs").glob("*.launch"))  # the claim was given back

    program = tmp_path / "prog"
    program.write_text(f"#!{sys.executable}\nprint('now it exists')\n")
    program.chmod(0o755)
    LocalLauncher(run_as=RUN_AS).launch(missing)
    join_watchers()
    assert capture.statuses() == ["RUNNING", "FINISHED"]


def test_a_redelivery_waits_while_the_first_launch_is_starting(tmp_path):
    marker = tmp_path / "job.exec.launch"
    marker.write_text(json.dumps({"state": "starting", "supervisor": 1, "host": "elsewhere"}))
    started = {"state": "started", "host": "elsewhere", "started": {"pid": 42}}
    writer = subprocess.Popen(
        [sys.executable, "-c",
         f"import time, pathlib; time.sleep(0.5); "
         f"pathlib.Path({str(marker)!r}).write_text({json.dumps(started)!r})"]
    )  # fmt: skip
    try:
        assert supervisor._claim(marker) == started
    finally:
        writer.wait(10)


def test_a_launch_whose_supervisor_died_while_starting_is_not_started_twice(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    marker = tmp_path / "job.exec.launch"
    here = supervisor.HOST
    marker.write_text(json.dumps({"state": "starting", "supervisor": dead.pid, "host": here}))
    with pytest.raises(LauncherError, match="not started a second time"):
        supervisor._claim(marker)
    assert json.loads(marker.read_text())["state"] == "starting"  # left for an operator


class Unknown(LocalLauncher):
    name = "no-such-launcher"


def test_a_supervisor_that_dies_before_answering_is_a_clear_error(tmp_path, capture):
    launch = launch_of(tmp_path, capture, command=["true"])
    with pytest.raises(LauncherError, match="(?s)exited \\(1\\) before starting it: .*no watched"):
        Unknown(run_as=RUN_AS).launch(launch)
    assert capture.calls == [] and WatchedLauncher.watchers == []


def test_a_stop_request_kills_the_compute_and_is_recorded_as_an_update(tmp_path, capture):
    command = [sys.executable, "-c", "import time; time.sleep(600)"]
    started = LocalLauncher(run_as=RUN_AS).launch(
        launch_of(tmp_path, capture, "exec-s", command=command)
    )
    wait_for(lambda: capture.statuses() == ["RUNNING"])

    asked = supervisor.request_stop(tmp_path / "logs", UUID, "no longer needed")
    join_watchers()

    assert asked == ["exec-s"]
    assert capture.statuses() == ["RUNNING", "STOPPED"]
    query, body = capture.calls[-1]
    assert query["event"] == "update"  # the job was failed by whoever asked: not a status
    assert body["error"] == "the compute was stopped on request: no longer needed"
    assert body["exitCode"] == -9
    assert not Path(f"/proc/{started['pid']}").exists()
    assert supervisor.request_stop(tmp_path / "logs", UUID, "again") == []  # it has ended
