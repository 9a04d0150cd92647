"""The local launcher: a pipeline's command component as an argv subprocess, its
environment and variables, callbacks over HTTP, maxRunTime, and who it runs as."""

from __future__ import annotations

import os
import pwd
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.adapters.launchers import make_launcher
from pipelinejobs.adapters.launchers.base import Launch
from pipelinejobs.adapters.launchers.local import LocalLauncher
from pipelinejobs.adapters.launchers.watched import WatchedLauncher
from pipelinejobs.adapters.storage import LocalStorage
from pipelinejobs.domain import validation
from pipelinejobs.errors import ConfigError, LauncherError, ValidationError
from tests.adapters.launchers.callbacks import Capture
from tests.support import runtime_config

UUID = "1073f4ff-c2b9-5190-bd9a-e6a406d9796a"
TOKEN = "0dc73dc3ff39b49a"
#: These tests run as root, so a launcher that runs their jobs says root may.
RUN_AS = "root"
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs a worker running as root")


@pytest.fixture
def capture() -> Iterator[Capture]:
    server = Capture()
    yield server
    server.close()


def pipeline_of(command: list[str], **component: Any) -> dict[str, Any]:
    """A pipeline whose command component (app ``local-app``) runs ``command``."""
    return {"components": [{"id": "local-app", "command": command, **component}]}


def launch_of(
    tmp_path: Path,
    capture: Capture,
    pipeline: dict[str, Any],
    archive: Path | None = None,
    **definition: Any,
) -> Launch:
    base = (
        f"{capture.url}/actors/v2/jobs-manager/messages?uuid={UUID}&token={TOKEN}&x-nonce=PJ_test"
    )
    return Launch(
        job={"uuid": UUID, "archive_system": "test-system"},
        pipeline=pipeline,
        job_definition={"appId": "local-app", **definition},
        archive_path="/products/job",
        archive_dir=archive or tmp_path / "archive" / "products" / "job",
        token=TOKEN,
        report=lambda status, body: "unused",
        callback_base=base,
        log_path=tmp_path / "logs" / f"{UUID}.log",
    )


def run_to_end(launch: Launch, run_as: str = RUN_AS) -> dict:
    started = LocalLauncher(run_as=run_as).launch(launch)
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
    pipeline = pipeline_of([sys.executable, "-c", script], environment={"GREETING": "hola"})
    launch = launch_of(tmp_path, capture, pipeline)
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
        validation.validate("agave_job_callback", body)
        assert body["archivePath"] == "/products/job"
    assert capture.calls[-1][1]["exitCode"] == 0


@pytest.mark.parametrize(
    "value",
    ["$(touch pwned)", "; touch pwned", "${HOME}", "a b\tc", "`touch pwned`", "'\"", "-"],
)
def test_a_variable_arrives_as_one_literal_argv_element_and_environment(tmp_path, capture, value):
    # ${S} whole is replaced; inside a longer element it is left as it is written.
    script = "import os, sys; print(repr(sys.argv[1:]), repr(os.environ['S']))"
    pipeline = pipeline_of(
        [sys.executable, "-c", script, "${S}", "--sample=${S}"], variables={"S": {}}
    )
    launch = launch_of(tmp_path, capture, pipeline, parameters={"S": value})
    run_to_end(launch)
    assert f"{[value, '--sample=${S}']!r} {value!r}" in launch.log_path.read_text()
    assert not (launch.archive_dir / "pwned").exists()
    assert capture.statuses() == ["RUNNING", "FINISHED"]


def test_a_failing_command_reports_its_exit_code(tmp_path, capture):
    pipeline = pipeline_of([sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"])
    launch = launch_of(tmp_path, capture, pipeline)
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
        tmp_path, capture, pipeline_of([sys.executable, "-c", script]), maxRunTime="00:00:01"
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


SAMPLE = {"SAMPLE": {"pattern": "^[A-Za-z0-9_.-]+$", "required": True}}


@pytest.mark.parametrize(("definition", "components", "path"), [
    ({"parameters": {"SAMPLE": "s1"}}, [], "job_definition/launcher"),
    ({"parameters": {"SAMPLE": "s1"}}, [{"repo": "ex/c:1"}], "job_definition/launcher"),
    ({"command": ["sh", "-c", "id"]}, None, "job_definition/command"),
    ({"environment": {"LD_PRELOAD": "/x.so"}}, None, "job_definition/environment"),
    ({"image": "alpine"}, None, "job_definition/image"),
    ({"entrypoint": ["sh"]}, None, "job_definition/entrypoint"),
    ({"parameters": {"SAMPLE": "s1", "OTHER": "x"}}, None, "job_definition/parameters/OTHER"),
    ({"parameters": {"SAMPLE": "s1;id"}}, None, "job_definition/parameters/SAMPLE"),
    ({}, None, "job_definition/parameters/SAMPLE"),  # required
    ({"parameters": {"SAMPLE": "s1"}, "maxRunTime": "1:00"}, None, "job_definition/maxRunTime"),
])  # fmt: skip
def test_bad_launches_are_refused_before_anything_starts(definition, components, path):
    pipeline = pipeline_of(["true", "${SAMPLE}"], variables=SAMPLE)
    if components is not None:
        pipeline = {"components": components}
    with pytest.raises(ValidationError) as info:
        LocalLauncher(run_as=RUN_AS).check({"appId": "local-app", **definition}, pipeline)
    assert info.value.detail["path"] == path


def test_a_missing_program_is_a_clear_error(tmp_path, capture):
    launch = launch_of(tmp_path, capture, pipeline_of(["/no/such/program"]))
    with pytest.raises(LauncherError, match="cannot start '/no/such/program'"):
        LocalLauncher(run_as=RUN_AS).launch(launch)
    assert capture.calls == []


@pytest.mark.parametrize("bad", ["1:00", "aa:bb:cc", "00:00:00", "01:60:00"])
def test_bad_max_run_time_is_refused(tmp_path, capture, bad):
    launch = launch_of(tmp_path, capture, pipeline_of(["true"]), maxRunTime=bad)
    with pytest.raises(ValidationError) as info:
        LocalLauncher(run_as=RUN_AS).launch(launch)
    assert info.value.detail["path"] == "job_definition/maxRunTime"


# -- who the job runs as -----------------------------------------------------------------------


@as_root
@pytest.mark.parametrize("mode", ["production", None], ids=["production-config", "no-setting"])
def test_a_root_worker_refuses_to_run_jobs_as_root_by_default(tmp_path, capture, mode):
    if mode is None:
        launcher = LocalLauncher()
    else:
        config = runtime_config(tmp_path, system={"mode": mode})
        launcher = make_launcher("local", config, LocalStorage(tmp_path / "storage"))
    launch = launch_of(tmp_path, capture, pipeline_of(["true"]))
    with pytest.raises(ConfigError) as info:
        launcher.launch(launch)
    assert "does not run jobs as root" in info.value.message
    assert "launcher.run_as" in info.value.message and info.value.detail == {
        "setting": "launcher.run_as"
    }
    assert capture.calls == [] and not launch.archive_dir.exists()


@pytest.mark.parametrize(("mode", "run_as", "effective"), [
    ("embedded", "", "root"),  # whoever started it, root included
    ("production", "", ""),
    ("production", "nobody", "nobody"),
    ("embedded", "nobody", "nobody"),
])  # fmt: skip
def test_who_the_configuration_says_local_jobs_run_as(tmp_path, mode, run_as, effective):
    config = runtime_config(tmp_path, system={"mode": mode}, launcher={"run_as": run_as})
    launcher = make_launcher("local", config, LocalStorage(tmp_path / "storage"))
    assert isinstance(launcher, LocalLauncher) and launcher.run_as == effective
    assert launcher.options() == {"run_as": effective}  # what its supervisor is told


@pytest.fixture
def world_readable() -> Iterator[Path]:
    """A directory every user can reach (pytest's own are root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="pipelinejobs-run-as-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@as_root
@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="needs /usr/bin/python3")
def test_a_root_worker_with_run_as_nobody_runs_the_job_as_nobody(tmp_path, capture, world_readable):
    nobody = pwd.getpwnam("nobody")
    script = (
        "import os; print('uid', os.getuid(), os.geteuid(), os.getgid(), os.getgroups(), "
        "os.environ['HOME']); open('mine.txt', 'w').write('written by the job')"
    )
    # /usr/bin/python3: the venv's interpreter lives under /root, which nobody cannot read.
    launch = launch_of(
        tmp_path,
        capture,
        pipeline_of(["/usr/bin/python3", "-c", script]),
        archive=world_readable / "job",
    )
    run_to_end(launch, run_as="nobody")
    log = launch.log_path.read_text()
    assert capture.statuses() == ["RUNNING", "FINISHED"], log
    expected = f"uid {nobody.pw_uid} {nobody.pw_uid} {nobody.pw_gid} [] {nobody.pw_dir}"
    assert expected in log
    written = launch.archive_dir / "mine.txt"
    assert written.read_text() == "written by the job"
    assert written.stat().st_uid == nobody.pw_uid


def test_a_worker_that_cannot_switch_users_refuses(tmp_path, capture, monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 4242)  # not root, and not nobody
    with pytest.raises(ConfigError, match="cannot start jobs as another user"):
        LocalLauncher(run_as="nobody").check({"appId": "local-app"}, pipeline_of(["true"]))
    with pytest.raises(ConfigError, match="no user on this machine"):
        LocalLauncher(run_as="no-such-user-here").check(
            {"appId": "local-app"}, pipeline_of(["true"])
        )
    LocalLauncher().check({"appId": "local-app"}, pipeline_of(["true"]))  # runs as itself
