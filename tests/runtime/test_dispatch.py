"""The runtime: resolving actors, submitting and delivering executions, errors at the
dispatch boundary, transient retries, and recovery of orphaned executions."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelinejobs.errors import (
    BusUnavailable,
    NotFound,
    StoreUnavailable,
    TooManyConflicts,
    UnknownActor,
    http_status,
)
from pipelinejobs.runtime.dispatch import Runtime
from pipelinejobs.runtime.executions import derived_id
from tests.actors.jobs_support import make_job, token
from tests.support import FakeClock, make_runtime, runtime_config
from tests.support import stub as bus

MANAGER = "jobs-manager"
ALIASES = ["pipelines-manager", "jobs-manager", "jobs-indexer", "launcher-proxy", "notifier"]


@pytest.fixture(params=["memory", "sqlite"])
def clocked(request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock):
    """A runtime whose clock is ``clock``, with quick retries."""
    rt = make_runtime(tmp_path, request.param, clock, bus={"max_retries": 2, "recover_after": 60.0})
    yield rt
    rt.close()


def update(rt: Runtime, job: dict, **extra) -> dict:
    return {"uuid": job["uuid"], "name": "update", "token": token(rt, job), **extra}


# -- actors -----------------------------------------------------------------------------


def test_every_actor_is_known_by_alias_and_by_id(runtime: Runtime):
    assert sorted(runtime.actors) == sorted(ALIASES)
    ids = {runtime.actor_id(alias) for alias in ALIASES}
    assert len(ids) == len(ALIASES)
    for alias in ALIASES:
        actor_id = runtime.actor_id(alias)
        assert len(actor_id) == 13 and actor_id.isalnum()
        assert runtime.actor(alias) is runtime.actors[alias]
        assert runtime.actor(actor_id) is runtime.actors[alias]
        assert runtime.actor(actor_id).alias == alias


def test_actor_ids_depend_on_the_deployment_domain(tmp_path: Path):
    one = make_runtime(tmp_path / "one")
    other = make_runtime(tmp_path / "two", identifiers={"namespace_domain": "example.org"})
    try:
        assert one.actor_id(MANAGER) == make_runtime(tmp_path / "three").actor_id(MANAGER)
        assert one.actor_id(MANAGER) != other.actor_id(MANAGER)
    finally:
        one.close()
        other.close()


def test_a_message_sent_to_an_actor_id_runs_that_actor(runtime: Runtime):
    job = make_job(runtime)
    execution = runtime.submit(runtime.actor_id(MANAGER), update(runtime, job))
    assert execution["actor"] == MANAGER
    assert bus(runtime).published == [(MANAGER, execution["id"])]
    bus(runtime).join()
    assert runtime.executions.get(execution["id"])["status"] == "COMPLETE"
    assert runtime.jobs.get(job["uuid"])["last_event"] == "update"


@pytest.mark.parametrize("name", ["no-such-actor", "", "JOBS-MANAGER", "0123456789abc"])
def test_an_unknown_actor_is_not_found(runtime: Runtime, name):
    with pytest.raises(UnknownActor) as err:
        runtime.submit(name, {"uuid": "x"})
    assert isinstance(err.value, NotFound)
    assert http_status(err.value) == 404
    assert err.value.detail["actor"] == name
    assert MANAGER in err.value.message  # names the actors there are
    with pytest.raises(UnknownActor):
        runtime.actor(name)
    assert runtime.store.count("executions") == 0


def test_delivery_to_an_unknown_actor_raises(runtime: Runtime):
    with pytest.raises(UnknownActor):
        runtime.deliver("no-such-actor", "0123456789abc")


# -- submitting -----------------------------------------------------------------------------


def test_submit_stores_before_publishing(runtime: Runtime):
    job = make_job(runtime)
    execution = runtime.submit(MANAGER, update(runtime, job), {"x-nonce": "n"})
    stored = runtime.executions.get(execution["id"])
    assert stored["status"] == "SUBMITTED" and stored["attempts"] == 0
    assert stored["message"] == update(runtime, job)
    assert stored["params"] == {"x-nonce": "n"}
    assert bus(runtime).published == [(MANAGER, execution["id"])]


def test_submitting_an_existing_id_again(runtime: Runtime):
    job = make_job(runtime)
    first = runtime.submit(MANAGER, update(runtime, job), execution_id="AAAAAAAAAAAAA")
    # Still SUBMITTED: published again (it may never have reached the broker).
    again = runtime.submit(MANAGER, update(runtime, job, data={"n": 2}), execution_id=first["id"])
    assert again["message"] == first["message"]
    assert bus(runtime).published == [(MANAGER, first["id"])] * 2
    bus(runtime).join()
    # Finished: found, not published again, not run again.
    done = runtime.submit(MANAGER, update(runtime, job), execution_id=first["id"])
    assert done["status"] == "COMPLETE"
    assert len(bus(runtime).published) == 2
    assert [h["name"] for h in runtime.jobs.record(job["uuid"])["history"]] == ["create", "update"]


def test_a_message_the_broker_cannot_take_is_withdrawn_unless_an_actor_sent_it(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
):
    """The gateway answers BusUnavailable "retry, nothing was written": a message from
    outside is deleted again, so the retry does not run it twice; an actor's send
    stays SUBMITTED, for recovery to publish (its sender is not told to retry)."""
    job = make_job(runtime)

    def down(alias: str, execution_id: str, *, delay: float = 0.0, priority: str = "") -> None:
        raise BusUnavailable("no broker")

    monkeypatch.setattr(bus(runtime), "publish", down)
    with pytest.raises(BusUnavailable):
        runtime.submit(MANAGER, update(runtime, job), execution_id="AAAAAAAAAAAAA")
    assert runtime.store.get("executions", "AAAAAAAAAAAAA") is None
    with pytest.raises(BusUnavailable):
        runtime.submit(
            MANAGER, update(runtime, job), execution_id="BBBBBBBBBBBBB", parent="CCCCCCCCCCCCC"
        )
    assert runtime.executions.get("BBBBBBBBBBBBB")["status"] == "SUBMITTED"


def test_submit_without_a_bus_is_an_error(tmp_path: Path):

    rt = Runtime(runtime_config(tmp_path))  # type: ignore[arg-type]
    try:
        job = make_job(rt)
        with pytest.raises(RuntimeError, match="no bus"):
            rt.submit(MANAGER, update(rt, job))
    finally:
        rt.close()


# -- delivering -----------------------------------------------------------------------------


def test_a_delivery_records_status_timestamps_and_logs(clocked: Runtime, clock: FakeClock):
    job = make_job(clocked)
    execution = clocked.submit(MANAGER, update(clocked, job))
    clock.advance(5)
    done = clocked.deliver(MANAGER, execution["id"], worker="w1")
    assert done is not None
    assert done["status"] == "COMPLETE" and done["error"] is None
    assert done["attempts"] == 1 and done["worker"] == "w1"
    assert done["created"] < done["started"] == done["finished"]
    assert done["result"]["event"] == "update"
    assert done["logs"] and all(execution["id"] in line for line in done["logs"])


def test_delivery_of_an_unknown_execution_returns_none(runtime: Runtime, caplog):
    with caplog.at_level(logging.ERROR, logger="pipelinejobs.runtime"):
        assert runtime.deliver(MANAGER, "0123456789abc") is None
    assert "0123456789abc" in caplog.text
    assert runtime.store.count("executions") == 0


def test_an_expected_error_ends_the_execution_with_its_detail(runtime: Runtime):
    job = make_job(runtime)
    execution = runtime.submit(MANAGER, {"uuid": job["uuid"], "name": "update"})
    bus(runtime).join()
    done = runtime.executions.get(execution["id"])
    assert done["status"] == "ERROR" and done["result"] is None
    assert done["error"]["error"] == "PermissionDenied"
    assert done["error"]["uuid"] == job["uuid"]
    assert any(" ERROR " in line and done["error"]["message"] in line for line in done["logs"])


def test_an_unexpected_error_is_internal_and_shows_no_traceback(
    runtime: Runtime, monkeypatch, caplog
):
    def broken(ctx, msg):
        ctx.log.info("about to fail")
        raise KeyError("secret-internal-detail")

    monkeypatch.setattr(runtime.actors[MANAGER], "handle", broken)
    job = make_job(runtime)
    with caplog.at_level(logging.ERROR):
        execution = runtime.submit(MANAGER, update(runtime, job))
        assert bus(runtime).join(fail_fast=False) == 1  # not re-raised, not retried
    done = runtime.executions.get(execution["id"])
    assert done["status"] == "ERROR"
    assert done["error"]["error"] == "InternalError"
    assert "KeyError" in done["error"]["message"]
    text = " ".join([done["error"]["message"], *done["logs"]])
    assert "Traceback" not in text and "secret-internal-detail" not in text
    assert 'File "' not in text
    assert any("about to fail" in line for line in done["logs"])
    # ... the details are in the worker's own log.
    assert "Traceback" in caplog.text and "secret-internal-detail" in caplog.text
    assert done["attempts"] == 1


@pytest.mark.parametrize("error", [StoreUnavailable, TooManyConflicts])
def test_transient_errors_are_retried_until_max_retries(clocked: Runtime, monkeypatch, error):
    calls: list[str] = []

    def unavailable(ctx, msg):
        calls.append(ctx.execution_id)
        raise error("the store is down")

    monkeypatch.setattr(clocked.actors[MANAGER], "handle", unavailable)
    job = make_job(clocked)
    execution = clocked.submit(MANAGER, update(clocked, job))
    # One delivery: requeued as SUBMITTED and published again.
    requeued = clocked.deliver(MANAGER, execution["id"])
    assert requeued is not None
    assert requeued["status"] == "SUBMITTED"
    assert requeued["retry_reason"] == "the store is down"
    assert bus(clocked).published == [(MANAGER, execution["id"])] * 2
    bus(clocked).queue.popleft()  # the original publication, already delivered above
    bus(clocked).join()
    done = clocked.executions.get(execution["id"])
    assert done["status"] == "ERROR"
    assert done["error"]["error"] == error.__name__
    assert done["attempts"] == 3  # max_retries = 2
    assert len(calls) == 3
    assert bus(clocked).published == [(MANAGER, execution["id"])] * 3
    assert any("gave up after 3 attempts" in line for line in done["logs"])


def test_a_transient_error_then_success_completes(clocked: Runtime, monkeypatch):
    handle = clocked.actors[MANAGER].handle
    failures = [StoreUnavailable("blip")]

    def flaky(ctx, msg):
        if failures:
            raise failures.pop()
        return handle(ctx, msg)

    monkeypatch.setattr(clocked.actors[MANAGER], "handle", flaky)
    job = make_job(clocked)
    execution = clocked.submit(MANAGER, update(clocked, job))
    bus(clocked).join()
    done = clocked.executions.get(execution["id"])
    assert done["status"] == "COMPLETE" and done["attempts"] == 2
    assert any("Attempt 2" in line for line in done["logs"])
    assert [h["name"] for h in clocked.jobs.record(job["uuid"])["history"]] == ["create", "update"]


def test_an_execution_left_running_is_run_again(runtime: Runtime):
    """A worker died mid-delivery: the broker redelivers; the effect happens once."""
    job = make_job(runtime)
    execution = runtime.submit(MANAGER, update(runtime, job))
    runtime.executions.start(execution["id"], "dead-worker")
    runtime.jobs.apply(job["uuid"], "update", {}, delivery_id=execution["id"])
    bus(runtime).join()
    done = runtime.executions.get(execution["id"])
    assert done["status"] == "COMPLETE" and done["attempts"] == 2
    assert done["result"]["duplicate"] is True
    assert [h["name"] for h in runtime.jobs.record(job["uuid"])["history"]] == ["create", "update"]


# -- recovery -----------------------------------------------------------------------------


def test_recover_republishes_old_submitted_executions_only(clocked: Runtime, clock: FakeClock):
    job = make_job(clocked)
    old = clocked.submit(MANAGER, update(clocked, job))["id"]
    clock.advance(61)
    fresh = clocked.submit(MANAGER, update(clocked, job, data={"n": 2}))["id"]
    bus(clocked).queue.clear()
    bus(clocked).published.clear()

    assert clocked.recover() == [old]  # recover_after = 60 s
    assert bus(clocked).published == [(MANAGER, old)]
    assert clocked.recover() == []  # claimed: not again before another 60 s
    clock.advance(1)
    assert sorted(clocked.recover(older_than=0.5)) == sorted([old, fresh])
    assert clocked.recover(older_than=120) == []
    assert clocked.executions.get(old)["recoveries"] == 2


def test_a_sweep_skips_an_actor_whose_queue_still_holds_messages(clocked, clock):
    job = make_job(clocked)
    waiting = clocked.submit(MANAGER, update(clocked, job))["id"]
    clock.advance(61)
    # The message is still in the queue: it is not lost, just waiting its turn.
    assert clocked.recover(idle_only=True) == []
    bus(clocked).queue.clear()  # now it is gone (taken by a worker that died)
    assert clocked.recover(idle_only=True) == [waiting]


def test_a_retry_waiting_out_its_back_off_is_not_recovered_early(clocked, clock):
    job = make_job(clocked)
    execution = clocked.submit(MANAGER, update(clocked, job))["id"]
    bus(clocked).queue.clear()
    clocked.executions.requeue(execution, "store unavailable", delay=300)
    clock.advance(120)
    assert clocked.recover() == []  # its delayed message is held by a worker
    clock.advance(241)
    assert clocked.recover() == [execution]  # due 300 s ago + recover_after: lost


def test_workers_sweeping_at_once_publish_each_execution_once(tmp_path, clock):
    import threading

    rt = make_runtime(tmp_path, "sqlite", clock, bus={"recover_after": 60.0})
    try:
        job = make_job(rt)
        lost = {rt.submit(MANAGER, update(rt, job, data={"n": n}))["id"] for n in range(40)}
        bus(rt).queue.clear()
        bus(rt).published.clear()
        clock.advance(61)
        found: list[list[str]] = []
        start = threading.Barrier(4)

        def sweep() -> None:
            start.wait()
            found.append(rt.recover(idle_only=True))

        threads = [threading.Thread(target=sweep) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        recovered = [e for ids in found for e in ids]
        assert sorted(recovered) == sorted(lost)  # each once, by one sweeper or another
        assert sorted(e for _, e in bus(rt).published) == sorted(lost)
    finally:
        rt.close()


def test_recover_takes_running_only_when_asked(clocked: Runtime, clock: FakeClock):
    job = make_job(clocked)
    stuck = clocked.submit(MANAGER, update(clocked, job))["id"]
    clocked.executions.start(stuck, "dead-worker")
    clock.advance(3600)
    bus(clocked).queue.clear()
    bus(clocked).published.clear()

    assert clocked.recover() == []
    assert clocked.recover(include_running=True) == [stuck]
    assert bus(clocked).published == [(MANAGER, stuck)]
    bus(clocked).join()
    assert clocked.executions.get(stuck)["status"] == "COMPLETE"


def test_recover_ignores_finished_executions_and_other_actors(clocked: Runtime, clock: FakeClock):
    job = make_job(clocked)
    done = clocked.submit(MANAGER, update(clocked, job))["id"]
    bus(clocked).join()
    pending = clocked.submit("jobs-indexer", {"uuid": job["uuid"], "token": token(clocked, job)})
    clock.advance(3600)
    bus(clocked).queue.clear()

    assert clocked.recover([MANAGER], include_running=True) == []
    assert clocked.recover(["jobs-indexer"]) == [pending["id"]]
    assert done not in clocked.recover(include_running=True)


def test_recovered_executions_run_once(clocked: Runtime, clock: FakeClock):
    job = make_job(clocked)
    execution = clocked.submit(MANAGER, update(clocked, job))
    clock.advance(120)
    clocked.recover()  # published twice now: the original and the recovery
    assert bus(clocked).join() == 2
    assert clocked.executions.get(execution["id"])["attempts"] == 1
    history = clocked.jobs.record(job["uuid"])["history"]
    assert [h["name"] for h in history] == ["create", "update"]


def test_children_ids_are_derived_from_the_parent(runtime: Runtime):
    job = make_job(runtime, index={"level": "1"}, state="RUNNING")
    execution = runtime.submit(
        MANAGER, {"uuid": job["uuid"], "name": "finish", "token": token(runtime, job)}
    )
    bus(runtime).join()
    child = runtime.executions.get(execution["id"])["result"]["indexing"]
    assert child == derived_id(execution["id"], "1")


# -- supervisors lost with their machine --------------------------------------------------


def launch_record(rt: Runtime, uuid: str, **record) -> Path:
    from pipelinejobs.adapters.launchers.supervisor import HOST

    rt.config.log_dir.mkdir(parents=True, exist_ok=True)
    marker = rt.config.log_dir / f"{uuid}.execA.launch"
    marker.write_text(json.dumps({"state": "started", "host": HOST, **record}))
    return marker


def test_a_job_whose_supervisor_was_lost_is_failed_and_its_compute_stopped(runtime: Runtime):
    from pipelinejobs.adapters.launchers.supervisor import identity

    job = make_job(runtime, state="RUNNING")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    compute = subprocess.Popen(["sleep", "600"], start_new_session=True)
    marker = launch_record(
        runtime,
        job["uuid"],
        identity="boot:gone",
        compute_identity=identity(compute.pid),
        started={"supervisor": gone.pid, "pid": compute.pid},
    )
    try:
        assert runtime.reap_lost_launches() == [job["uuid"]]
        assert compute.wait(10) == -9  # nobody could report its end: stopped
        bus(runtime).join()
        failed = runtime.jobs.record(job["uuid"])
        assert failed["state"] == "FAILED"
        reason = failed["history"][-1]["data"]["reason"]
        assert "supervisor of this job's compute was lost" in reason
        assert json.loads(marker.read_text())["state"] == "lost"
        assert runtime.reap_lost_launches() == []  # once
    finally:
        compute.kill()
        compute.wait()


@pytest.mark.parametrize("whose", ["alive", "other-host"])
def test_a_supervisor_still_running_or_elsewhere_is_left_alone(runtime: Runtime, whose: str):
    from pipelinejobs.adapters.launchers.supervisor import identity

    job = make_job(runtime, state="RUNNING")
    record = {"identity": identity(os.getpid()), "started": {"supervisor": os.getpid()}}
    if whose == "other-host":
        record = {"host": "elsewhere", "identity": "x", "started": {"supervisor": 1}}
    marker = launch_record(runtime, job["uuid"], **record)
    assert runtime.reap_lost_launches() == []
    assert json.loads(marker.read_text())["state"] == "started"
    assert runtime.jobs.get(job["uuid"])["state"] == "RUNNING"
