"""Local-command jobs run by real ``pipelinejobs worker`` processes (not a test module).

A local job's supervisor reports RUNNING and FINISHED (or FAILED) over HTTP, as Agave
would, so these tests run a ``pipelinejobs gateway`` (gunicorn) beside the workers,
on the same store and broker: its port is ``gateway.port``, which is also the
callback URL the launcher-proxy gives the job (``launcher.public_url`` unset).
Production allows no ``local`` backend by default, and a root worker runs no local
job unless ``launcher.run_as`` says root (the tests run as root): both are set here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import requests

from pipelinejobs.runtime.dispatch import Runtime

from .conftest import _free_port, system_env, wait_for
from .server import ROOT


def local_env(tmp_path: Path, broker_url: str, **extra: str) -> dict[str, str]:
    """:func:`system_env` with local jobs allowed and a gateway port of their own."""
    return system_env(
        tmp_path,
        broker_url,
        PIPELINEJOBS_GATEWAY_PORT=str(_free_port()),
        PIPELINEJOBS_LAUNCHER_BACKENDS="local",
        PIPELINEJOBS_LAUNCHER_RUN_AS="root",
        **extra,
    )


@contextmanager
def gateway(env: dict[str, str], tmp_path: Path) -> Iterator[Gateway]:
    """``pipelinejobs gateway`` with one gunicorn worker; :meth:`Gateway.wait` until it
    answers (started first, it comes up while the test does something else)."""
    log = tmp_path / "gateway.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipelinejobs.cli", "gateway", "--workers", "1"],
            env=env,
            cwd=ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    running = Gateway(f"http://127.0.0.1:{env['PIPELINEJOBS_GATEWAY_PORT']}", proc, log)
    try:
        yield running
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


class Gateway:
    def __init__(self, url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.url, self.proc, self.log = url, proc, log

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def send(self, key: str, actor: str, message: dict[str, Any]) -> str:
        """POST ``message`` to ``actor`` with bearer ``key``; the execution's id. (The
        response is not kept: a live one keeps its connection open.)"""
        answer = requests.post(
            f"{self.url}/actors/v2/{actor}/messages",
            headers={"Authorization": f"Bearer {key}"},
            json=message,
            timeout=30,
        )
        assert answer.status_code == 200, answer.text + self.output()
        return str(answer.json()["result"]["executionId"])

    def wait(self, timeout: float = 30) -> None:
        def up() -> bool:
            if self.proc.poll() is not None:
                return True  # dead: stop waiting, say so below
            try:
                with requests.get(f"{self.url}/healthz", timeout=2) as answer:
                    return answer.status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(up, timeout, "the gateway to serve", self.output)
        assert self.proc.poll() is None, self.output()


def command_pipeline(rt: Runtime, name: str, code: str) -> str:
    """The uuid of a pipeline whose one component runs ``python -c code`` locally
    (stored directly, as the pipelines-manager would for an admin)."""
    component = {"id": f"local-{name}", "command": [sys.executable, "-c", code]}
    return str(rt.pipelines.create({"name": name, "components": [component]}).pipeline["uuid"])


def launch_message(pipeline_uuid: str, sample: str, **extra: Any) -> dict[str, Any]:
    """An ``agave_pipelinejob`` launching a job of ``pipeline_uuid``; no indexing (no
    jobs-indexer needs to run) unless ``extra`` says otherwise."""
    return {
        "parameters": {"sample_id": sample},
        "job_definition": {"maxRunTime": "00:01:00"},
        "pipeline_uuid": pipeline_uuid,
        "index": False,
        **extra,
    }
