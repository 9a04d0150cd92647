"""Retry end to end (issue 15): a real local job that fails twice then succeeds,
retried automatically by its launch's retry policy with back-off, over HTTP on the
embedded system; and ``pipelinejobs jobs retry`` refusing a job that is not FAILED."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import requests

from .conftest import _free_port
from .server import Server, start_server
from .test_local_jobs import job_when, launch, runs


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("retry") / "data", _free_port())
    yield running
    running.stop()


def seconds(date: str) -> float:
    return datetime.fromisoformat(date.replace("Z", "+00:00")).timestamp()


def test_a_job_failing_twice_then_succeeding_ends_finished_on_attempt_3(
    server: Server, tmp_path: Path
) -> None:
    counter = tmp_path / "count"
    code = (
        f"import pathlib, sys; c = pathlib.Path({str(counter)!r}); "
        "n = int(c.read_text() if c.exists() else 0) + 1; c.write_text(str(n)); "
        "pathlib.Path('out.txt').write_text(str(n)); "
        "sys.exit(0 if n >= 3 else 1)"
    )
    result = launch(
        server, {"maxRunTime": "00:01:00"}, runs(server, "flaky", code),
        retry={"limit": 3, "backoff": 1, "max_backoff": 10},
    )  # fmt: skip
    uuid = result["uuid"]
    job = job_when(
        server, uuid, lambda j: j["last_event"] == "indexed", "the third attempt to be indexed"
    )
    assert job["state"] == "FINISHED" and job["attempt"] == 3
    assert counter.read_text() == "3"
    assert [a["attempt"] for a in job["attempts"]] == [1, 2]
    paths = [a["archive_path"] for a in job["attempts"]] + [job["archive_path"]]
    assert len(set(paths)) == 3  # a new instancing directory per attempt
    history = job["history"]
    fails = [h for h in history if h["name"] == "fail"]
    resets = [h for h in history if h["name"] == "reset"]
    assert len(fails) == 2 and len(resets) == 2
    waits = [seconds(r["date"]) - seconds(f["date"]) for f, r in zip(fails, resets, strict=True)]
    # backoff × 2^(attempt−1), jittered over its upper half: 0.5–1 s, then 1–2 s
    assert 0.45 <= waits[0] <= 5 and 0.95 <= waits[1] <= 6, waits
    assert [r["data"]["attempt"] for r in resets] == [2, 3]
    assert resets[0]["data"]["reason"].startswith("automatic retry of attempt 1")
    files = requests.get(
        f"{server.url}/jobs/{uuid}/files",
        headers={"Authorization": f"Bearer {server.admin_key}"},
        timeout=10,
    ).json()["result"]["files"]
    assert sorted(f.get("attempt") for f in files) == [3]  # only the finished one is indexed

    # Retrying it now is refused, naming its state.
    cli = subprocess.run(
        [sys.executable, "-m", "pipelinejobs.cli", "jobs", "retry", uuid, "--reason", "again"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "PIPELINEJOBS_URL": server.url, "PIPELINEJOBS_KEY": server.admin_key},
    )  # fmt: skip
    assert cli.returncode != 0
    assert f"job {uuid} is FINISHED: only a FAILED job can be retried" in cli.stderr
