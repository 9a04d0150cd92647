"""Workers killed with SIGKILL mid-message: after a new worker starts, every event is
applied exactly once (at-least-once delivery + idempotent effects)."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from .conftest import finished, system_env, wait_for

COMPONENTS = [{"id": "crash-test-app", "inputs": {}, "parameters": {}}]


def make_job(system, archive_path: str | None = None) -> tuple[str, str]:
    runtime = system.runtime
    pipeline = runtime.pipelines.create({"name": "crash", "components": COMPONENTS}).pipeline
    fields = {"archive_path": archive_path} if archive_path else {}
    job = runtime.jobs.create(
        pipeline_uuid=pipeline["uuid"],
        linkage=["sample.tacc.crash"],
        data={"archive": archive_path},
        fields=fields,
    ).job
    return job["uuid"], runtime.tokens.update_token(job["uuid"])


def broker_state(redis_url: str) -> str:
    """Where a killed worker's message is, for a timeout's report: kombu's
    unacknowledged messages and their age (restored past ``bus.visibility_timeout``),
    the restore scan's lock (held, no scan restores anything) and the queues."""
    client = redis.Redis.from_url(redis_url)
    try:
        now = time.time()
        held = client.zrange("unacked_index", 0, -1, withscores=True)
        ages = [(tag.decode(), round(now - score, 1)) for tag, score in held]
        queues = {  # every priority's list (README: Priority)
            f"{q}{step}": client.llen(f"{q}{step}")
            for q in ("actor.jobs-indexer", "actor.jobs-manager")
            for step in ("", ":3", ":6")
        }
        lock = client.pttl("unacked_mutex")
    finally:
        client.close()
    return f"\nbroker: unacked (tag, age s) {ages}; restore lock TTL {lock} ms; queues {queues}"


def test_indexer_killed_mid_index_applies_index_once(
    tmp_path: Path, redis_url, workers, client_system
):
    env = system_env(tmp_path, redis_url)
    system = client_system(env)
    runtime = system.runtime
    archive = "/products/v2/crash/indexing"
    files = 20_000
    folder = runtime.storage.makedirs(archive)
    for i in range(files):
        sub = folder / f"d{i % 50:02d}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i:06d}.txt").write_bytes(b"x")
    uuid, token = make_job(system, archive)
    runtime.jobs.apply(uuid, "run")
    runtime.jobs.apply(uuid, "finish")

    first = workers.start(env, actors="jobs-manager,jobs-indexer", concurrency=1)
    request = system.send(
        "jobs-indexer", {"uuid": uuid, "name": "index", "level": "2", "token": token}
    )

    def indexing_under_way() -> bool:
        execution = runtime.executions.get(request["id"])
        return (execution.get("progress") or {}).get("files_indexed", 0) > 0

    wait_for(indexing_under_way, 60, "the indexer to be part-way through", workers.logs)
    workers.kill(first)
    killed = runtime.executions.get(request["id"])
    assert killed["status"] == "RUNNING"
    assert killed["progress"]["files_indexed"] < files, "the kill came too late to test"
    assert runtime.jobs.get(uuid)["state"] == "INDEXING"

    workers.start(env, actors="jobs-manager,jobs-indexer", concurrency=1)
    done = wait_for(
        lambda: finished(system, request["id"]),
        90,
        "the redelivered index",
        lambda: workers.logs() + broker_state(redis_url),
    )
    assert done["status"] == "COMPLETE", done
    assert done["attempts"] == 2
    assert any("Attempt 2" in line for line in done["logs"])
    wait_for(
        lambda: (lambda j: j if j["last_event"] == "indexed" else None)(runtime.jobs.get(uuid)),
        60,
        "the indexed event",
        workers.logs,
    )
    names = [h["name"] for h in runtime.jobs.record(uuid)["history"]]
    assert names == ["create", "run", "finish", "index", "indexed"]
    assert runtime.store.count("files", {"job_uuid": uuid}) == files
    assert runtime.store.count("files", {"job_uuid": uuid, "present": True}) == files


#: Sweep for lost messages every second, for executions SUBMITTED over 2 s: a worker
#: killed between taking a message from Redis and recording it as unacknowledged
#: loses it (kombu's window), and only the sweep brings it back.
SWEEP = {"PIPELINEJOBS_BUS_RECOVER_AFTER": "2", "PIPELINEJOBS_BUS_RECOVER_INTERVAL": "1"}


def test_manager_killed_in_a_stream_of_events_applies_each_once(
    tmp_path: Path, redis_url, workers, client_system
):
    env = system_env(tmp_path, redis_url, **SWEEP)
    system = client_system(env)
    runtime = system.runtime
    uuid, token = make_job(system)
    count = 150
    first = workers.start(env, actors="jobs-manager", concurrency=2)
    sent = [
        system.send(
            "jobs-manager", {"uuid": uuid, "name": "update", "token": token, "data": {"n": n}}
        )
        for n in range(count)
    ]

    def some_done() -> bool:
        return runtime.store.count("executions", {"status": "COMPLETE"}) >= 20

    wait_for(some_done, 60, "the first events to be applied", workers.logs)
    workers.kill(first)
    applied_before = len(runtime.jobs.record(uuid)["history"]) - 1
    assert applied_before < count, "every event was applied before the kill"

    workers.start(env, actors="jobs-manager", concurrency=2)

    def unfinished() -> str:
        left = [runtime.executions.get(e["id"]) for e in sent if not finished(system, e["id"])]
        return (
            f"unfinished: {[(e['id'], e['status'], e['attempts']) for e in left]}\n"
            + (workers.logs()[-5000:])
        )

    wait_for(
        lambda: all(finished(system, e["id"]) for e in sent),
        60,
        "every event to finish after the restart",
        unfinished,
    )
    job = runtime.jobs.record(uuid)
    updates = [h for h in job["history"] if h["name"] == "update"]
    assert len(updates) == count
    assert sorted(h["data"]["n"] for h in updates) == list(range(count))
    assert job["version"] == count
    assert all(runtime.executions.get(e["id"])["status"] == "COMPLETE" for e in sent)


def test_a_running_worker_republishes_a_message_that_never_reached_it(
    tmp_path: Path, redis_url, workers, client_system
):
    # Stored, never published (the publisher died in between, or the broker lost it):
    # not only a starting worker but a running one finds it.
    env = system_env(tmp_path, redis_url, **SWEEP)
    system = client_system(env)
    runtime = system.runtime
    uuid, token = make_job(system)
    workers.start(env, actors="jobs-manager", concurrency=1)
    wait_for(lambda: "ready." in workers.logs(), 30, "the worker to start", workers.logs)
    lost, _ = runtime.executions.submit(
        "jobs-manager", {"uuid": uuid, "name": "update", "token": token, "data": {"n": 1}}
    )

    done = wait_for(lambda: finished(system, lost["id"]), 30, "the sweep", workers.logs)
    assert done["status"] == "COMPLETE" and done["recoveries"] == 1
    assert [h["name"] for h in runtime.jobs.record(uuid)["history"]] == ["create", "update"]
    assert "re-publishing orphaned execution" in workers.logs()
