"""The production shape: `pipelinejobs gateway` (gunicorn) in front of a
`pipelinejobs worker` on Redis, and start-up recovery of executions that were
stored but never published."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import requests

from .conftest import _free_port, finished, system_env, wait_for
from .server import ROOT


def cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pipelinejobs.cli", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_gunicorn_gateway_in_front_of_a_worker(tmp_path: Path, redis_url, workers) -> None:
    port = _free_port()
    env = system_env(tmp_path, redis_url, PIPELINEJOBS_GATEWAY_PORT=str(port))
    key = cli(env, "keys", "create", "--role", "admin")
    workers.start(env, concurrency=1)
    log = open(tmp_path / "gateway.log", "wb")  # noqa: SIM115
    gateway = subprocess.Popen(
        [sys.executable, "-m", "pipelinejobs.cli", "gateway", "--workers", "2"],
        env=env,
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            try:
                return requests.get(f"{url}/healthz", timeout=2).status_code == 200
            except requests.ConnectionError:
                return gateway.poll() is not None  # stop waiting if it died

        wait_for(up, 30, "gunicorn to serve", lambda: (tmp_path / "gateway.log").read_text())
        assert gateway.poll() is None, (tmp_path / "gateway.log").read_text()
        health = requests.get(f"{url}/healthz", timeout=5).json()["result"]
        assert health == {"store": "ok", "broker": "ok"}
        answer = requests.post(
            f"{url}/actors/v2/pipelines-manager/messages",
            params={"sync": "true"},
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
            json={
                "name": "prod",
                "components": [{"id": "prod-app", "inputs": {}, "parameters": {}}],
            },
        )
        assert answer.status_code == 200, answer.text + workers.logs()
        assert answer.json()["result"]["result"]["created"] is True
        assert "gunicorn" in (tmp_path / "gateway.log").read_text().lower()
        # What gunicorn refuses before the app sees it is answered in the envelope too.
        for params, headers, status in (
            ({"pipeline": "p" * 10_000}, {}, 414),
            ({}, {"X-Big": "h" * 10_000}, 431),
        ):
            refused = requests.get(f"{url}/jobs", params=params, headers=headers, timeout=10)
            assert refused.status_code == status, refused.text
            assert refused.headers["Content-Type"] == "application/json"
            assert refused.json()["status"] == "error" and refused.json()["message"]
    finally:
        os.killpg(gateway.pid, signal.SIGTERM)
        gateway.wait(20)


def test_gateway_refuses_the_in_process_broker(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINEJOBS_")}
    env.update({"PIPELINEJOBS_SYSTEM_DATA_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)})
    done = subprocess.run(
        [sys.executable, "-m", "pipelinejobs.cli", "gateway"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "shared broker" in done.stderr and "Traceback" not in done.stderr


def test_a_worker_republishes_executions_stored_but_never_published(
    tmp_path: Path, redis_url, workers, client_system
) -> None:
    env = system_env(tmp_path, redis_url, PIPELINEJOBS_BUS_RECOVER_AFTER="0")
    system = client_system(env)
    # As if the process crashed between storing the execution and publishing it.
    orphan, created = system.runtime.executions.submit(
        "pipelines-manager",
        {"name": "orphan", "components": [{"id": "orphan-app", "inputs": {}, "parameters": {}}]},
    )
    assert created and orphan["status"] == "SUBMITTED"
    workers.start(env, actors="pipelines-manager", concurrency=1)
    done = wait_for(lambda: finished(system, orphan["id"]), 60, "the orphan to run", workers.logs)
    assert done["status"] == "COMPLETE", done
    assert "re-publish" in workers.logs()
