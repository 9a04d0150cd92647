"""Real local jobs end to end over HTTP: a subprocess writes files, its watcher calls
back with the job's nonce and token, the outputs are indexed, its log is readable.

What each job runs is its pipeline's command component, registered with the admin key
(``runs``); launches name the pipeline and set nothing else of the compute."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from .conftest import _free_port, wait_for
from .server import ROOT, Server, start_server

APP = "local-demo-app"
WRITE = (
    "import pathlib, sys; d = pathlib.Path('sample.tacc.abcde'); d.mkdir(); "
    "(d / 'table.csv').write_text('a,b\\n1,2\\n'); pathlib.Path('notes.txt').write_text('x');"
    " print('wrote 2 files'); print('to stderr too', file=sys.stderr)"
)


def register_pipeline(server: Server) -> None:
    """The pipeline every job here runs under."""
    created = requests.post(
        f"{server.url}/actors/v2/pipelines-manager/messages",
        params={"sync": "true"},
        headers={"Authorization": f"Bearer {server.admin_key}"},
        timeout=30,
        json={"name": "local", "components": [{"id": APP, "inputs": {}, "parameters": {}}]},
    )
    assert created.status_code == 200, created.text


def runs(server: Server, name: str, code: str) -> str:
    """The uuid of a pipeline whose jobs run ``code`` (registered with the admin key:
    only an admin may register a pipeline that runs local commands)."""
    component = {"id": f"local-{name}", "command": [sys.executable, "-c", code]}
    created = requests.post(
        f"{server.url}/actors/v2/pipelines-manager/messages",
        params={"sync": "true"},
        headers={"Authorization": f"Bearer {server.admin_key}"},
        timeout=30,
        json={"name": name, "components": [component]},
    )
    assert created.status_code == 200, created.text
    return str(created.json()["result"]["result"]["uuid"])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("local") / "data", _free_port())
    register_pipeline(running)
    yield running
    running.stop()


def launch(server: Server, definition: dict, pipeline: str | None = None, **extra: object) -> dict:
    """Launch a job of ``pipeline`` (else of the app pipeline) with the admin key."""
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    if pipeline is not None:
        extra["pipeline_uuid"] = pipeline
    answer = requests.post(
        f"{server.url}/actors/v2/launcher-proxy/messages",
        params={"sync": "true"},
        headers=auth,
        timeout=60,
        json={
            "parameters": {"sample_id": "sample.tacc.abcde"},
            "job_definition": {"appId": APP, **definition} if pipeline is None else definition,
            **extra,
        },
    )
    assert answer.status_code == 200, answer.text + server.output()
    return answer.json()["result"]["result"]


def job_when(server: Server, uuid: str, predicate, what: str) -> dict:
    auth = {"Authorization": f"Bearer {server.admin_key}"}

    def check() -> dict | None:
        job = requests.get(f"{server.url}/jobs/{uuid}", headers=auth, timeout=10).json()
        return job["result"] if predicate(job["result"]) else None

    return wait_for(check, 60, what, server.output)  # type: ignore[return-value]


def test_a_local_job_is_run_called_back_indexed_and_logged(server: Server) -> None:
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    result = launch(
        server,
        {"maxRunTime": "00:01:00"},
        runs(server, "write", WRITE),
        index_patterns=["sample%5C.tacc%5C.abcde/.*%5C.csv$"],
        processing_level="2",
    )
    uuid = result["uuid"]
    assert result["launch"]["backend"] == "local"
    job = job_when(server, uuid, lambda j: j["last_event"] == "indexed", "the job to be indexed")
    assert job["state"] == "FINISHED"
    names = [h["name"] for h in job["history"]]
    assert names[:2] == ["create", "run"] and names[-3:] == ["finish", "index", "indexed"]
    finish = next(h for h in job["history"] if h["name"] == "finish")
    assert finish["data"]["exitCode"] == 0 and finish["data"]["status"] == "FINISHED"
    assert result["token"] not in str(job)

    files = requests.get(f"{server.url}/jobs/{uuid}/files", headers=auth, timeout=10).json()[
        "result"
    ]["files"]
    assert [(f["relative_path"], f["level"]) for f in files] == [
        ("sample.tacc.abcde/table.csv", "2")
    ]

    log = requests.get(f"{server.url}/jobs/{uuid}/log", headers=auth, timeout=10)
    assert log.status_code == 200 and log.headers["Content-Type"].startswith("text/plain")
    assert "wrote 2 files" in log.text and "to stderr too" in log.text
    tail = requests.get(
        f"{server.url}/jobs/{uuid}/log",
        headers=auth,
        timeout=10,
        params={"offset": log.headers["X-Log-Next-Offset"]},
    )
    assert tail.text == ""

    # The callbacks came over HTTP with a nonce minted for this job: two uses spent.
    nonces = requests.get(
        f"{server.url}/actors/v2/jobs-manager/nonces", headers=auth, timeout=10
    ).json()["result"]
    mine = [n for n in nonces if uuid in n["description"]]
    assert len(mine) == 1 and mine[0]["remainingUses"] == mine[0]["maxUses"] - 2


def test_a_job_exiting_3_fails_with_its_exit_code(server: Server) -> None:
    result = launch(
        server,
        {},
        runs(server, "exit-3", "import sys; sys.exit(3)"),
        data={"case": "exit 3"},
    )
    job = job_when(server, result["uuid"], lambda j: j["state"] == "FAILED", "the job to fail")
    fail = job["history"][-1]
    assert fail["name"] == "fail" and fail["data"]["exitCode"] == 3
    assert "code 3" in fail["data"]["error"]


def test_a_job_over_its_max_run_time_is_killed_and_fails(server: Server) -> None:
    result = launch(
        server,
        {"maxRunTime": "00:00:01"},
        runs(server, "sleep-300", "import time; time.sleep(300)"),
        data={"case": "too slow"},
    )
    job = job_when(server, result["uuid"], lambda j: j["state"] == "FAILED", "the kill")
    fail = job["history"][-1]
    assert "maxRunTime 00:00:01 exceeded" in fail["data"]["error"]


def test_a_callback_job_gets_its_agave_notification(server: Server) -> None:
    result = launch(server, {"launcher": "callback"}, data={"case": "callback"})
    launched = result["launch"]
    assert launched["backend"] == "callback"
    url = launched["callback_url"]
    assert url.endswith("&status=${JOB_STATUS}") and "x-nonce=PJ_" in url
    assert launched["notifications"] == [{"url": url, "event": "*", "persistent": True}]
    # Post as Agave would (macro filled in, its job as the body), with no key: the nonce
    # and token suffice.
    agave = {
        "appId": APP,
        "owner": "tacobot",
        "executionSystem": "hpc-tacc-stampede2",
        "archivePath": result["archive_path"],
        "archiveSystem": "data-sd2e-community",
        "inputs": {},
        "parameters": {},
        "_links": {},
    }
    for status in ("QUEUED", "RUNNING", "FINISHED"):
        answer = requests.post(
            url.replace("${JOB_STATUS}", status) + "&sync=true",
            json={**agave, "status": status},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
    # Something else as a status callback's body is refused, naming the field.
    answer = requests.post(
        url.replace("${JOB_STATUS}", "FINISHED"), json={"status": "FINISHED"}, timeout=30
    )
    assert answer.status_code == 400 and answer.json()["result"]["path"] == "appId", answer.text
    job = job_when(server, result["uuid"], lambda j: j["last_event"] == "indexed", "indexed")
    assert [h["name"] for h in job["history"]] == [
        "create",
        "run",
        "resource",
        "run",
        "finish",
        "index",
        "indexed",
    ]


def test_archive_path_escapes_are_refused_with_400(server: Server, tmp_path: Path) -> None:
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    for path in ("agave://data-sd2e-community/../../etc", "agave://data-sd2e-community/a/../../b"):
        answer = requests.post(
            f"{server.url}/actors/v2/launcher-proxy/messages",
            headers=auth,
            timeout=30,
            json={
                "parameters": {"sample_id": "sample.tacc.x"},
                "archive_path": path,
                "job_definition": {"appId": APP},
            },
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["result"]["path"] == "archive_path"


def test_the_demo_walks_a_job_through_its_lifecycle(server: Server) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "PIPELINEJOBS_URL": server.url,
        "PIPELINEJOBS_KEY": server.admin_key,
    }
    done = subprocess.run(
        [sys.executable, "-m", "pipelinejobs.cli", "demo"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    states = [line.split()[-1] for line in done.stdout.splitlines() if "->" in line]
    walk = [s for i, s in enumerate(states) if i == 0 or s != states[i - 1]]
    # (The RUNNING callback may add a second run -> RUNNING, a self-loop.)
    assert walk == ["CREATED", "RUNNING", "FINISHED", "INDEXING", "FINISHED"]
    assert "file sample.demo.1/counts.csv  level 2" in done.stdout
    assert "file sample.demo.1/summary.json  level 2" in done.stdout
    assert "scratch.tmp" not in done.stdout
    uuid = done.stdout.strip().splitlines()[-1]
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    assert (
        requests.get(f"{server.url}/jobs/{uuid}", headers=auth, timeout=10).json()["result"][
            "state"
        ]
        == "FINISHED"
    )


def test_a_job_still_reports_its_end_after_serve_is_killed_mid_run(tmp_path: Path) -> None:
    # The compute waits for a file; serve (gateway, worker and all) is SIGKILLed while
    # it runs and started again; only a watcher that outlived serve can report the end.
    go = tmp_path / "go"
    wait = (
        f"import pathlib, time\nwhile not pathlib.Path({str(go)!r}).exists(): time.sleep(0.05)\n"
        "print('finished after the restart')"
    )
    port, data = _free_port(), tmp_path / "data"
    first = start_server(data, port)
    auth = {"Authorization": f"Bearer {first.admin_key}"}
    try:
        register_pipeline(first)
        uuid = launch(first, {}, runs(first, "wait", wait))["uuid"]
        # RUNNING is the launcher's own `run`; wait for the supervisor's RUNNING report
        # too, or the kill may catch it in flight and, redelivered after FINISHED, it
        # is (rightly) ignored as late.
        job_when(
            first,
            uuid,
            lambda j: [h["name"] for h in j["history"]].count("run") == 2,
            "the supervisor's RUNNING report",
        )
    finally:
        first.proc.kill()
        first.proc.wait(10)

    second = start_server(data, port, admin_key=first.admin_key)
    try:
        go.touch()
        # Finished, then indexed automatically (every file, level "1").
        job = job_when(second, uuid, lambda j: j["last_event"] == "indexed", "the job to finish")
        names = [h["name"] for h in job["history"]]
        assert names == ["create", "run", "run", "finish", "index", "indexed"]
        assert job["state"] == "FINISHED"
        assert job["history"][3]["data"]["exitCode"] == 0
        log = requests.get(f"{second.url}/jobs/{uuid}/log", headers=auth, timeout=10).text
        assert "finished after the restart" in log
    finally:
        second.stop()


def test_failing_a_running_job_stops_its_compute(server: Server) -> None:
    # Cancel is `fail` with a reason: the job is FAILED at once, and its compute,
    # which would otherwise run for ten minutes, is killed by its supervisor.
    auth = {"Authorization": f"Bearer {server.admin_key}"}
    result = launch(server, {}, runs(server, "sleep-600", "import time; time.sleep(600)"))
    uuid, pid = result["uuid"], result["launch"]["pid"]

    def reported_running(job: dict) -> bool:  # its supervisor's RUNNING, after the launch's
        return [h["name"] for h in job["history"]].count("run") == 2

    job_when(server, uuid, reported_running, "the supervisor to report RUNNING")

    cancelled = requests.post(
        f"{server.url}/actors/v2/jobs-manager/messages",
        params={"sync": "true"},
        headers=auth,
        timeout=30,
        json={"uuid": uuid, "name": "fail", "token": result["token"],
              "data": {"reason": "cancelled by the test"}},
    )  # fmt: skip
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["result"]["result"]["stopping"]  # the launch it asked to stop

    def stopped(job: dict) -> bool:
        return any((h.get("data") or {}).get("status") == "STOPPED" for h in job["history"])

    job = job_when(server, uuid, stopped, "the compute's stop to be recorded")
    assert job["state"] == "FAILED"
    assert [h["name"] for h in job["history"]] == ["create", "run", "run", "fail", "update"]
    assert "cancelled by the test" in job["history"][-1]["data"]["error"]
    gone = not Path(f"/proc/{pid}").exists()
    assert gone or Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
