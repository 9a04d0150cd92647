"""Time limits in real workers: an actor running Python code past its limit is
interrupted in every pool; one blocked in C is killed with its pool process by a
prefork worker at limit + grace (and its execution closed by the main process), and
ends TimeLimitExceeded when the call returns in the thread pool, which cannot kill."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from .conftest import finished, system_env, wait_for
from .test_broker_loss import make_jobs


def parse(date: str) -> datetime:
    return datetime.fromisoformat(date.replace("Z", "+00:00"))


LIMITS = {
    "PIPELINEJOBS_BUS_TIME_LIMITS": "jobs-manager=1",
    "PIPELINEJOBS_BUS_TIME_LIMIT_GRACE": "2",
}


@pytest.mark.parametrize("pool", ["prefork", "threads"])
def test_an_actor_past_its_limit_is_stopped(
    tmp_path: Path, redis_url, workers, client_system, pool: str
):
    env = system_env(tmp_path, redis_url, **LIMITS)
    env.pop("PIPELINEJOBS_BUS_VISIBILITY_TIMEOUT")  # a long run is not a lost one here
    system = client_system(env)
    runtime = system.runtime
    ((uuid, token),) = make_jobs(system, 1)
    workers.start(
        env, actors="jobs-manager", concurrency=2, pool=pool, module="tests.integration.slow_worker"
    )
    wait_for(lambda: "ready." in workers.logs(), 30, "the worker to start", workers.logs)

    def send(data: dict) -> str:
        event = {"uuid": uuid, "name": "update", "token": token, "data": data}
        return str(system.send("jobs-manager", event)["id"])

    spin, block = send({"spin": 30}), send({"block": 6})

    def outcome(execution_id: str) -> dict:
        return wait_for(lambda: finished(system, execution_id), 30, execution_id, workers.logs)

    spun = outcome(spin)
    assert spun["status"] == "ERROR" and spun["error"]["error"] == "TimeLimitExceeded", spun
    assert "interrupted" in spun["error"]["message"]
    blocked = outcome(block)
    assert blocked["status"] == "ERROR" and blocked["error"]["error"] == "TimeLimitExceeded"
    took = (parse(blocked["finished"]) - parse(blocked["started"])).total_seconds()
    if pool == "prefork":
        # Killed at 1 + 2 s, before its sleep returned; the worker's main process closed
        # it (the dying process may still have written its own TimeLimitExceeded).
        assert took < 5.5, blocked
        assert "killed after 3s" in workers.logs()
    else:  # a thread cannot be killed: it ends when the sleep returns
        assert took >= 6, blocked
        assert "interrupted" in blocked["error"]["message"], blocked
    # The worker goes on: its next message runs as usual.
    assert outcome(send({"n": 1}))["status"] == "COMPLETE"
    job = runtime.jobs.get(uuid)
    assert job["last_event"] == "update"
