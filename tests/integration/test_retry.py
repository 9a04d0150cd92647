"""Retry end to end (issue 15): a real local job that fails twice then succeeds,
retried automatically by its launch's retry policy with back-off, over HTTP on the
embedded system; ``pipelinejobs jobs retry`` refusing a job that is not FAILED; and,
with ``pipelinejobs worker`` processes on Redis, a retry's back-off outliving the
worker that was waiting it out (SIGKILLed), its message restored or lost."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from pipelinejobs.adapters.bus.redis_watch import execution_of
from pipelinejobs.runtime.system import System

from .conftest import Workers, _free_port, finished, wait_for
from .local_launch import command_pipeline, gateway, launch_message, local_env
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


#: The back-off of the retry whose worker is killed while it waits (s): jittered over
#: its upper half, 2–4 s — time to kill the worker in.
BACKOFF = 4


def forget(redis_url: str, execution_id: str) -> int:
    """Delete the message of ``execution_id`` from kombu's unacknowledged hash (and its
    index): a message lost with its worker, as if the broker had lost it too. How many
    were deleted."""
    client = redis.Redis.from_url(redis_url)
    try:
        tags = [
            t for t, raw in client.hgetall("unacked").items() if execution_of(raw) == execution_id
        ]
        for tag in tags:
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
        return len(tags)
    finally:
        client.close()


@pytest.mark.parametrize("message", ["restored", "lost"])
def test_an_automatic_retry_waiting_out_its_back_off_survives_its_worker_killed(
    message: str,
    tmp_path: Path,
    redis_url: str,
    workers: Workers,
    client_system: Callable[..., System],
) -> None:
    """A local job with ``retry: {limit: 2, backoff: 4}`` whose first attempt fails, run
    by ``pipelinejobs worker`` processes on Redis. The jobs-manager sends the retry with
    its back-off (2–4 s, jittered): stored SUBMITTED with ``retry_at``, published with
    a countdown, held by the worker until due. That worker is SIGKILLed while it holds
    it, and a new one started; the job still ends FINISHED on attempt 2, no sooner
    after the failure than the back-off.

    ``restored``: kombu gives the killed worker's unacknowledged message back to the
    queue after ``bus.visibility_timeout`` (3 s here), and the new worker runs it
    (at once if it is due, else when it is). ``lost``: the message is also deleted
    from the broker, so only the execution record is left: the new worker's recovery
    sweep re-publishes it once ``retry_at`` has passed (``bus.lost_after`` later).
    """
    env = local_env(tmp_path, redis_url)
    system = client_system(env)
    rt = system.runtime
    counter = tmp_path / "count"
    code = (
        f"import pathlib, sys; c = pathlib.Path({str(counter)!r}); "
        "n = int(c.read_text() if c.exists() else 0) + 1; c.write_text(str(n)); "
        "sys.exit(0 if n >= 2 else 1)"
    )
    policy = {"limit": 2, "backoff": BACKOFF, "max_backoff": BACKOFF}
    with gateway(env, tmp_path) as gw:
        first = workers.start(env, actors="launcher-proxy,jobs-manager", concurrency=1)
        flaky = command_pipeline(rt, "flaky", code)
        gw.wait()
        launch = rt.submit(
            "launcher-proxy", launch_message(flaky, "sample.tacc.retry", retry=policy)
        )
        launched = wait_for(lambda: finished(system, launch["id"]), 60, "the launch", workers.logs)
        assert isinstance(launched, dict) and launched["status"] == "COMPLETE", launched
        uuid = launched["result"]["uuid"]

        def retry_held() -> dict[str, Any] | None:
            sent = rt.store.find("executions", {"actor": "launcher-proxy", "job": uuid}).items
            retries = [e for e in sent if e["message"].get("action") == "retry"]
            return retries[0] if retries and retries[0]["id"] in (system.bus.held() or ()) else None

        retry = wait_for(retry_held, 60, "the worker to hold the retry", workers.logs)
        assert isinstance(retry, dict)
        workers.kill(first)
        killed = time.time()
        # Killed while it waited out the back-off: nothing of the retry had run.
        assert seconds(retry["retry_at"]) > killed, (retry, killed)
        assert rt.executions.get(retry["id"])["status"] == "SUBMITTED"
        assert rt.jobs.get(uuid)["state"] == "FAILED"
        if message == "lost":
            assert forget(redis_url, retry["id"]) == 1
            assert retry["id"] not in (system.bus.held() or ())
        workers.start(env, actors="launcher-proxy,jobs-manager", concurrency=1)

        def ended() -> dict[str, Any] | None:
            job = rt.jobs.get(uuid)
            done = job["state"] in ("FINISHED", "FAILED") and job.get("attempt") == 2
            return job if done else None

        job = wait_for(ended, 60, "attempt 2 to end", lambda: workers.logs() + gw.output())
    assert isinstance(job, dict) and job["state"] == "FINISHED" and job["attempt"] == 2, job
    assert counter.read_text() == "2"
    assert rt.executions.get(retry["id"])["status"] == "COMPLETE"
    republished = f"re-publishing orphaned execution {retry['id']}" in workers.logs()
    assert republished == (message == "lost"), workers.logs()

    history = rt.jobs.record(uuid)["history"]
    fail = next(h for h in history if h["name"] == "fail")
    reset = next(h for h in history if h["name"] == "reset")
    assert reset["data"]["attempt"] == 2
    waited = seconds(reset["date"]) - seconds(fail["date"])
    drawn = seconds(retry["retry_at"]) - seconds(retry["created"])  # the jittered back-off
    assert BACKOFF / 2 <= drawn <= BACKOFF + 0.01, drawn
    assert waited >= drawn and seconds(reset["date"]) >= seconds(retry["retry_at"]), (waited, drawn)
    print(f"{message}: back-off {drawn:.2f}s, waited {waited:.2f}s between attempts 1 and 2")
