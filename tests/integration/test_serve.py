"""`pipelinejobs serve` as a real process, driven over real HTTP: keys, nonces, tokens,
refusals, and a job's whole lifecycle read back."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import requests

from .conftest import _free_port
from .server import ROOT, start_server

APP = "serve-test-app"


def cli(*args: str, data_dir: Path | None = None) -> str:
    """Run ``pipelinejobs ARGS`` (on ``data_dir`` when given); its last line of output."""
    where = ["--data-dir", str(data_dir)] if data_dir is not None else []
    done = subprocess.run(
        [sys.executable, "-m", "pipelinejobs.cli", *args, *where],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_a_job_lifecycle_over_http(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data, _free_port())
    url, http = server.url, requests.Session()
    try:
        admin = {"Authorization": f"Bearer {server.admin_key}"}
        # A user key, made by the CLI straight in the store while the server runs.
        user_key = cli("keys", "create", "--role", "user", data_dir=data)
        user = {"Authorization": f"Bearer {user_key}"}
        assert http.get(f"{url}/jobs", timeout=10).status_code == 401
        assert (
            http.get(
                f"{url}/jobs", headers={"Authorization": "Bearer nope"}, timeout=10
            ).status_code
            == 401
        )

        def post(
            actor: str, body: dict | None = None, headers: dict | None = None, **params: str
        ) -> requests.Response:
            return http.post(
                f"{url}/actors/v2/{actor}/messages",
                json=body,
                params=params,
                headers=headers if headers is not None else user,
                timeout=30,
            )

        created = post(
            "pipelines-manager",
            {"name": "serve test", "components": [{"id": APP, "inputs": {}, "parameters": {}}]},
            _abaco_synchronous="true",
        )
        assert created.status_code == 200, created.text
        pipeline = created.json()["result"]["result"]["uuid"]

        launched = post(
            "launcher-proxy",
            {
                "parameters": {"measurement_id": ["measurement.tacc.1", "measurement.tacc.2"]},
                "job_definition": {"appId": APP, "report": [], "outputs": {"out.txt": "hi"}},
                # Not indexed when it finishes: the walk below is the callbacks' alone.
                "index": False,
            },
            _abaco_synchronous="true",
        )
        assert launched.status_code == 200, launched.text
        job, token = (launched.json()["result"]["result"][k] for k in ("uuid", "token"))

        # A wrong token is a valid credential without the right: 403, nothing changes.
        wrong = post(
            "jobs-manager",
            {"uuid": job, "name": "finish", "token": "0" * 16},
            _abaco_synchronous="true",
        )
        assert wrong.status_code == 403, wrong.text
        assert "update token" in wrong.json()["message"]

        # A nonce of two uses, for the compute backend's callbacks.
        made = http.post(
            f"{url}/actors/v2/jobs-manager/nonces",
            headers=user,
            json={"maxUses": 2, "description": "callbacks"},
            timeout=10,
        )
        assert made.status_code == 201, made.text
        nonce = made.json()["result"]["id"]
        listed = http.get(f"{url}/actors/v2/jobs-manager/nonces", headers=user, timeout=10)
        # Listed to its owner with the id to use, as Abaco lists nonces.
        assert listed.json()["result"][0]["id"] == nonce
        assert listed.json()["result"][0]["remainingUses"] == 2

        def callback(status: str) -> requests.Response:
            return http.post(
                f"{url}/actors/v2/jobs-manager/messages",
                timeout=30,
                params={
                    "uuid": job,
                    "status": status,
                    "token": token,
                    "x-nonce": nonce,
                    "_abaco_synchronous": "true",
                },
                json={  # what Agave posts: its job, with the status
                    "appId": APP,
                    "owner": "tacobot",
                    "executionSystem": "hpc-tacc-stampede2",
                    "archivePath": "/products/v2/x",
                    "archiveSystem": "data-sd2e-community",
                    "status": status,
                    "inputs": {},
                    "parameters": {},
                    "_links": {},
                },
            )

        assert callback("HEARTBEAT").status_code == 200
        assert callback("FINISHED").status_code == 200
        used_up = callback("ARCHIVING_FINISHED")
        assert used_up.status_code == 401 and "no uses left" in used_up.json()["message"]

        # A refused transition: 409 with the state, the event and where it is allowed.
        refused = post(
            "jobs-manager",
            {"uuid": job, "name": "reject", "token": token},
            _abaco_synchronous="true",
        )
        assert refused.status_code == 409, refused.text
        assert refused.json()["result"]["error"]["state"] == "FINISHED"
        assert refused.json()["result"]["error"]["allowed"] == ["VALIDATING"]

        # An admin-only event with an admin token minted by the CLI.
        admin_token = cli("admin-token", data_dir=data)
        reset = post(
            "jobs-manager",
            {"uuid": job, "name": "reset", "token": admin_token},
            headers=admin,
            _abaco_synchronous="true",
        )
        assert reset.status_code == 200, reset.text

        read = http.get(f"{url}/jobs/{job}", headers=user, timeout=10).json()["result"]
        assert [h["name"] for h in read["history"]] == [
            "create",
            "run",
            "update",
            "finish",
            "reset",
        ]
        assert read["state"] == "RESET"
        assert read["child_of"] == ["measurement.tacc.1", "measurement.tacc.2"]
        assert token not in str(read)
        counts = http.get(
            f"{url}/jobs",
            params={"counts": "true", "pipeline_uuid": pipeline},
            headers=user,
            timeout=10,
        ).json()["result"]["counts"]
        assert counts["RESET"] == 1 and sum(counts.values()) == 1
        execs = http.get(
            f"{url}/actors/v2/jobs-manager/executions", headers=user, timeout=10
        ).json()["result"]["executions"]
        assert len(execs) == 5  # wrong token, two callbacks, refused reject, reset
        assert (
            token
            not in http.get(
                f"{url}/actors/v2/jobs-manager/executions/{execs[-1]['id']}",
                headers=user,
                timeout=10,
            ).text
        )

        # Revoking the key (by the id `keys list` shows) shuts it out at once.
        newest = cli("keys", "list", data_dir=data)
        assert " user " in newest
        cli("keys", "revoke", newest.split()[0], data_dir=data)
        assert http.get(f"{url}/jobs", headers=user, timeout=10).status_code == 401
        assert http.get(f"{url}/jobs", headers=admin, timeout=10).status_code == 200
    finally:
        server.stop()
    assert server.proc.returncode is not None


def test_the_cli_speaks_to_the_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data, _free_port())
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": str(ROOT),
        "PIPELINEJOBS_URL": server.url,
        "PIPELINEJOBS_KEY": server.admin_key,
    }

    def run(*args: str, ok: bool | None = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "pipelinejobs.cli", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if ok is not None:  # None: either is fine (polling)
            assert (done.returncode == 0) == ok, done.stdout + done.stderr
        return done

    def answer(*args: str) -> dict:
        """The gateway's answer, as --json prints it (what a script reads)."""
        done = run(*args, "--json")
        assert done.stderr == "", done.stderr
        return json.loads(done.stdout)["result"]

    def shown(*args: str) -> list[str]:
        """What a person reads: stdout's lines; nothing on stderr."""
        done = run(*args)
        assert done.stderr == "", done.stderr
        return done.stdout.splitlines()

    try:
        pipeline = {
            "name": "cli",
            "components": [{"id": "cli-app", "inputs": {}, "parameters": {}}],
        }
        made = shown("run", "-m", json.dumps(pipeline), "pipelines-manager", "--sync")
        execution = made[0].split()[1]
        assert made[0] == f"execution {execution}  COMPLETE" and len(execution) == 13
        uuid = made[1].split()[1]
        assert made[1:3] == [f"uuid:    {uuid}", "created: true"]
        assert execution in shown("executions", "pipelines-manager")[1]
        assert "Action selected: create" in run("logs", "pipelines-manager", execution).stdout
        assert shown("pipelines", "list")[1].split() == [uuid, "active", "cli"]
        assert ["name:", "cli"] in [line.split() for line in shown("pipelines", "show", uuid)]

        launch = {
            "parameters": {"sample_id": "sample.tacc.cli"},
            "job_definition": {"appId": "cli-app", "report": ["RUNNING"]},
        }
        job = answer("run", "-m", json.dumps(launch), "launcher-proxy", "--sync")["result"]["uuid"]
        deadline = time.monotonic() + 30
        while answer("jobs", "show", job)["state"] != "RUNNING":
            assert time.monotonic() < deadline, "the RUNNING report never came"
            time.sleep(0.2)
        assert shown("jobs", "list", "--state", "running")[1].split()[:2] == [job, "RUNNING"]
        assert ["state:", "RUNNING"] in [line.split() for line in shown("jobs", "show", job)]
        # An event as URL parameters, like `abaco run -q`; no token: refused, 403.
        refused = run(
            "run", "-q", f"uuid={job}", "-q", "event=finish", "jobs-manager", "--sync", ok=False
        )
        assert refused.stdout == "" and "Traceback" not in refused.stderr
        assert refused.stderr.startswith("pipelinejobs: error: 403")

        made = shown("nonces", "create", "jobs-manager", "--max-uses", "3")
        assert made[0].split()[1].startswith("PJ_") and ["uses:", "3"] in [m.split() for m in made]
        listed = shown("nonces", "list", "jobs-manager")
        assert listed[0].split()[:3] == ["ID", "LEVEL", "USES"] and " 3 " in listed[1]
        nonce = answer("nonces", "list", "jobs-manager")[0]["id"]
        assert shown("nonces", "delete", "jobs-manager", nonce) == [f"deleted nonce {nonce}"]
        assert shown("nonces", "list", "jobs-manager") == ["no nonces of jobs-manager"]
        bad = run("jobs", "list", "--url", "http://127.0.0.1:1", ok=False)
        assert "cannot reach" in bad.stderr

        # A local job's output, then cancelling it: the compute stops, the follow ends.
        # What it runs is a pipeline's command component (the admin key registers it).
        slow = "import time; print('first line', flush=True); time.sleep(600)"
        command = {"id": "cli-slow", "command": [sys.executable, "-c", slow]}
        slow_pipeline = {"name": "slow", "components": [command]}
        shown("run", "-m", json.dumps(slow_pipeline), "pipelines-manager", "--sync")
        local = {
            "parameters": {"sample_id": "sample.tacc.cli2"},
            "job_definition": {"appId": "cli-slow"},
        }
        result = answer("run", "-m", json.dumps(local), "launcher-proxy", "--sync")["result"]
        local_job, token = result["uuid"], result["token"]
        deadline = time.monotonic() + 30
        while "first line" not in run("job-log", local_job, ok=None).stdout:
            assert time.monotonic() < deadline, "the job's output never appeared"
            time.sleep(0.2)
        wrong = run("cancel", local_job, "--token", "0" * 16, ok=False)
        assert "403" in wrong.stderr and "Traceback" not in wrong.stderr
        cancelled = shown("cancel", local_job, "--token", token, "--reason", "testing cancel")
        assert cancelled[0].startswith(f"job {local_job} is FAILED; its compute is being stopped")
        followed = run("job-log", local_job, "--follow", "--interval", "0.2")
        assert followed.stdout == "first line\n"  # and it returned: the job has ended
        record = answer("jobs", "show", local_job)
        assert record["state"] == "FAILED"
        (fail,) = [h for h in record["history"] if h["name"] == "fail"]
        assert fail["data"]["reason"] == "testing cancel"
    finally:
        server.stop()
