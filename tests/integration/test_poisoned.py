"""A real ``pipelinejobs worker`` on Redis starts, and recovers, around poisoned records.

Once, one execution stored with ``NaN`` in it made every worker started afterwards exit
at start-up (its recovery failed on that record). Here an execution, a job and a nonce
are damaged with raw SQL in the shared SQLite store, next to healthy executions left
SUBMITTED and never published (as a crash leaves them). The worker must start, apply
the healthy ones, set the poisoned ones aside, log each once, and keep sweeping.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from pipelinejobs.access.keys import Principal
from pipelinejobs.access.nonces import Nonces
from pipelinejobs.adapters.store.base import QUARANTINE

from .conftest import finished, system_env, wait_for

COMPONENTS = [{"id": "poisoned-test-app", "inputs": {}, "parameters": {}}]
OWNER = Principal("key", "k" * 64, "user", "k" * 64, ("jobs-manager",))


def test_a_worker_starts_and_recovers_around_poisoned_records(
    tmp_path: Path, redis_url, workers, client_system
) -> None:
    env = system_env(
        tmp_path,
        redis_url,
        PIPELINEJOBS_BUS_RECOVER_AFTER="0",
        PIPELINEJOBS_BUS_RECOVER_INTERVAL="1",
    )
    system = client_system(env)
    runtime = system.runtime
    pipeline = runtime.pipelines.create({"name": "poisoned", "components": COMPONENTS}).pipeline

    def job(n: int) -> tuple[str, str]:
        uuid = runtime.jobs.create(
            pipeline_uuid=pipeline["uuid"], linkage=["sample.tacc.poisoned"], data={"n": n}
        ).job["uuid"]
        return uuid, runtime.tokens.update_token(uuid)

    def orphan(target: tuple[str, str], n: int) -> str:
        """Stored SUBMITTED, never published: as if the publisher had crashed."""
        message = {"uuid": target[0], "name": "update", "token": target[1], "data": {"n": n}}
        return str(runtime.executions.submit("jobs-manager", message)[0]["id"])

    healthy, poisoned_job = job(1), job(2)
    _, nonce = Nonces(runtime.store).create("jobs-manager", OWNER, max_uses=3)
    first, second, poisoned, for_poisoned_job = (
        orphan(healthy, 1),
        orphan(healthy, 2),
        orphan(healthy, 3),
        orphan(poisoned_job, 4),
    )
    with sqlite3.connect(runtime.store.path) as conn:  # type: ignore[attr-defined]
        for table, key, text in [
            ("executions", poisoned, f'{{"id": "{poisoned}", "x": NaN}}'),
            ("jobs", poisoned_job[0], "not json"),
            ("nonces", nonce["id"], f'{{"id": "{nonce["id"]}", "x": Infinity}}'),
        ]:
            conn.execute(f'UPDATE "{table}" SET doc = ? WHERE k = ?', (text, key))

    worker = workers.start(env, actors="jobs-manager", concurrency=1)
    for execution in (first, second, for_poisoned_job):
        wait_for(lambda e=execution: finished(system, e), 60, f"{execution} to end", workers.logs)
    assert worker.poll() is None, "the worker exited:\n" + workers.logs()
    assert runtime.executions.get(first)["status"] == "COMPLETE"
    assert runtime.executions.get(second)["status"] == "COMPLETE"
    history = runtime.jobs.record(healthy[0])["history"]
    assert sorted(h["data"]["n"] for h in history if h["name"] == "update") == [1, 2]
    failed = runtime.executions.get(for_poisoned_job)
    assert failed["status"] == "ERROR" and failed["error"]["error"] == "CorruptDocument"
    assert runtime.store.get(QUARANTINE, f"executions/{poisoned}") is not None
    assert runtime.store.get(QUARANTINE, f"jobs/{poisoned_job[0]}") is not None

    # A later sweep of the running worker: it recovers a new orphan, and says nothing
    # more about the records already set aside.
    late = orphan(healthy, 5)
    done = wait_for(lambda: finished(system, late), 30, "a sweep", workers.logs)
    assert done["status"] == "COMPLETE", done
    logs = workers.logs()
    assert logs.count(f"executions record {poisoned} is corrupt") == 1, logs
    assert logs.count(f"executions record {poisoned} moved to the quarantine") == 1, logs
    assert logs.count(f"jobs record {poisoned_job[0]} is corrupt") == 1, logs
    assert nonce["id"] not in logs  # a worker never reads a nonce
    assert "Traceback" not in logs, logs
