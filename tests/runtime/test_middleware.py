"""Delivery middleware: the hooks and their order, retries, time limits, the
execution's log lines, the stub bus's fail-fast join, and closing an execution whose
process was killed at its hard limit."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.config import BusSettings
from pipelinejobs.errors import (
    TRANSIENT,
    BusUnavailable,
    ConfigError,
    PermissionDenied,
    StoreUnavailable,
    TooManyConflicts,
)
from pipelinejobs.runtime.dispatch import Runtime
from pipelinejobs.runtime.middleware import (
    Delivery,
    ExecutionLogging,
    Metrics,
    Middleware,
    Retries,
    TimeLimit,
    default_middleware,
)
from pipelinejobs.runtime.watchdog import Interrupted, Watchdog
from tests.actors.jobs_support import make_job, token
from tests.support import make_runtime
from tests.support import stub as bus

MANAGER = "jobs-manager"


def update(rt: Runtime, job: dict, **extra: Any) -> dict:
    return {"uuid": job["uuid"], "name": "update", "token": token(rt, job), **extra}


class Recorder(Middleware):
    """Writes down every hook it sees, under its own name."""

    def __init__(self, name: str, calls: list[str], handles: bool = False) -> None:
        self.name, self.calls, self.handles = name, calls, handles

    def before_deliver(self, delivery: Delivery) -> None:
        self.calls.append(f"{self.name}.before_deliver")

    def after_handle(self, delivery: Delivery) -> None:
        self.calls.append(f"{self.name}.after_handle")

    def on_error(self, delivery: Delivery, exc: Exception) -> Any:
        self.calls.append(f"{self.name}.on_error:{type(exc).__name__}")
        if self.handles:
            return delivery.runtime.executions.get(delivery.execution_id)
        return None

    def after_deliver(self, delivery: Delivery, execution: Any, exc: Exception | None) -> None:
        outcome = execution["status"] if execution else None
        self.calls.append(f"{self.name}.after_deliver:{outcome}:{type(exc).__name__}")

    def after_skip(self, alias: str, execution: Any) -> None:
        self.calls.append(f"{self.name}.after_skip:{execution['status']}")


def test_the_default_stack_is_logging_retries_time_limit_metrics(runtime: Runtime):
    kinds = [type(m) for m in runtime.middleware]
    assert kinds == [ExecutionLogging, Retries, TimeLimit, Metrics]
    assert runtime.middleware.find(TimeLimit) is runtime.middleware[2]


def test_hooks_run_in_order_before_and_in_reverse_after(runtime: Runtime):
    calls: list[str] = []
    runtime.middleware.insert(0, Recorder("outer", calls))
    runtime.middleware.append(Recorder("inner", calls))
    job = make_job(runtime)
    execution = runtime.submit(MANAGER, update(runtime, job))
    bus(runtime).join()
    assert runtime.executions.get(execution["id"])["status"] == "COMPLETE"
    assert calls == [
        "outer.before_deliver",
        "inner.before_deliver",
        "inner.after_handle",
        "outer.after_handle",
        "inner.after_deliver:COMPLETE:NoneType",
        "outer.after_deliver:COMPLETE:NoneType",
    ]
    calls.clear()
    runtime.deliver(MANAGER, execution["id"])  # a redelivery of a finished execution
    assert calls == ["inner.after_skip:COMPLETE", "outer.after_skip:COMPLETE"]


def test_an_error_is_offered_innermost_first_until_one_deals_with_it(runtime: Runtime):
    calls: list[str] = []
    runtime.middleware.insert(0, Recorder("outer", calls))
    runtime.middleware.append(Recorder("inner", calls, handles=True))
    job = make_job(runtime)
    execution = runtime.submit(MANAGER, {"uuid": job["uuid"], "name": "update"})  # no token
    bus(runtime).join()
    assert [c for c in calls if "on_error" in c] == ["inner.on_error:PermissionDenied"]
    # Dealt with: the runtime recorded nothing more (still RUNNING, as the hook left it).
    assert runtime.executions.get(execution["id"])["status"] == "RUNNING"
    assert calls[-1] == "outer.after_deliver:RUNNING:PermissionDenied"


def test_a_middleware_refusing_a_delivery_makes_its_error_the_outcome(runtime, monkeypatch):
    ran: list[str] = []
    monkeypatch.setattr(runtime.actors[MANAGER], "handle", lambda ctx, msg: ran.append("x"))

    class Closed(Middleware):
        def before_deliver(self, delivery: Delivery) -> None:
            raise PermissionDenied("deliveries are closed today")

    runtime.middleware.insert(0, Closed())
    job = make_job(runtime)
    execution = runtime.submit(MANAGER, update(runtime, job))
    bus(runtime).join()
    done = runtime.executions.get(execution["id"])
    assert done["status"] == "ERROR" and done["error"]["error"] == "PermissionDenied"
    assert any("deliveries are closed today" in line for line in done["logs"])
    assert ran == []


def test_every_after_handle_runs_even_when_one_raises(runtime: Runtime):
    calls: list[str] = []

    class Raises(Middleware):
        def after_handle(self, delivery: Delivery) -> None:
            raise PermissionDenied("changed my mind")

    runtime.middleware.insert(0, Recorder("outer", calls))
    runtime.middleware.append(Raises())
    job = make_job(runtime)
    execution = runtime.submit(MANAGER, update(runtime, job))
    bus(runtime).join()
    assert "outer.after_handle" in calls
    assert runtime.executions.get(execution["id"])["error"]["message"] == "changed my mind"


# -- retries ----------------------------------------------------------------------------


def test_one_definition_of_transient_used_by_the_runtime_and_the_bus():
    from pipelinejobs.adapters.bus import celery
    from pipelinejobs.runtime import dispatch, middleware, quarantine

    assert set(TRANSIENT) == {StoreUnavailable, TooManyConflicts, BusUnavailable}
    assert celery.TRANSIENT is TRANSIENT and middleware.TRANSIENT is TRANSIENT
    assert set(TRANSIENT) <= set(quarantine.OUTAGES)
    assert not hasattr(dispatch, "TRANSIENT")


def test_the_back_off_doubles_up_to_five_minutes():
    settings = BusSettings(retry_backoff=1.5)
    assert [settings.retry_delay(n) for n in (1, 2, 3, 4)] == [1.5, 3.0, 6.0, 12.0]
    assert settings.retry_delay(30) == 300.0


def test_a_broker_that_cannot_take_a_child_retries_the_parent(tmp_path, monkeypatch):
    """BusUnavailable is transient: an actor whose send failed runs again later (its
    child, stored SUBMITTED, is found and published then)."""
    rt = make_runtime(tmp_path, bus={"max_retries": 3})
    try:
        job = make_job(rt)
        flaky = [BusUnavailable("broker restarting")]

        def handle(ctx, msg):
            if flaky:
                raise flaky.pop()
            return {"ok": True}

        monkeypatch.setattr(rt.actors[MANAGER], "handle", handle)
        execution = rt.submit(MANAGER, update(rt, job))
        bus(rt).join()
        done = rt.executions.get(execution["id"])
        assert done["status"] == "COMPLETE" and done["attempts"] == 2
    finally:
        rt.close()


# -- time limits --------------------------------------------------------------------------


@pytest.fixture
def limited(tmp_path: Path):
    rt = make_runtime(tmp_path, bus={"time_limits": f"{MANAGER}=0.3", "time_limit": 0})
    yield rt
    rt.close()


def test_an_actor_past_its_limit_is_interrupted(limited: Runtime, monkeypatch):
    def spin(ctx, msg):
        ctx.log.info("spinning")
        end = time.monotonic() + 20
        while time.monotonic() < end:  # Python code: interruptible at any bytecode
            pass
        return {"spun": True}

    monkeypatch.setattr(limited.actors[MANAGER], "handle", spin)
    job = make_job(limited)
    execution = limited.submit(MANAGER, update(limited, job))
    began = time.monotonic()
    bus(limited).join()
    took = time.monotonic() - began
    done = limited.executions.get(execution["id"])
    assert done["status"] == "ERROR", done
    assert done["error"]["error"] == "TimeLimitExceeded"
    assert done["error"]["limit"] == 0.3 and done["error"]["actor"] == MANAGER
    assert any("spinning" in line for line in done["logs"])
    assert any("time limit of 0.3s" in line for line in done["logs"])
    assert 0.3 <= took < 5
    # Nothing is left pending in this thread: it keeps running Python code unharmed.
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        pass


def test_a_call_blocked_in_c_ends_timed_out_when_it_returns(limited: Runtime, monkeypatch):
    """What the thread pool can do: a sleep is not interrupted, but the delivery still
    ends TimeLimitExceeded, not COMPLETE, when it returns."""

    def sleepy(ctx, msg):
        time.sleep(0.6)
        return {"slept": True}

    monkeypatch.setattr(limited.actors[MANAGER], "handle", sleepy)
    job = make_job(limited)
    execution = limited.submit(MANAGER, update(limited, job))
    bus(limited).join()
    done = limited.executions.get(execution["id"])
    assert done["status"] == "ERROR" and done["error"]["error"] == "TimeLimitExceeded"


def test_actors_within_their_limit_and_other_actors_are_untouched(limited: Runtime):
    assert limited.middleware.find(TimeLimit).limits == {MANAGER: 0.3}
    job = make_job(limited)
    executions = [limited.submit(MANAGER, update(limited, job, data={"n": n})) for n in range(20)]
    bus(limited).join()
    assert {limited.executions.get(e["id"])["status"] for e in executions} == {"COMPLETE"}


def test_time_limits_are_configured_per_actor():
    settings = BusSettings(time_limit=600, time_limits="jobs-indexer = 7200, launcher-proxy=0")
    assert settings.time_limit_for("jobs-indexer") == 7200
    assert settings.time_limit_for("launcher-proxy") == 0
    assert settings.time_limit_for("jobs-manager") == 600
    limits = default_middleware(settings, ["jobs-indexer", "launcher-proxy", "jobs-manager"])[2]
    assert isinstance(limits, TimeLimit)
    assert limits.limits == {"jobs-indexer": 7200, "jobs-manager": 600}  # 0: no limit


@pytest.mark.parametrize("text", ["jobs-manager", "jobs-manager=soon", "=5", "jobs-manager=-1"])
def test_a_malformed_time_limit_is_refused_naming_the_setting(text: str):
    with pytest.raises(ConfigError) as err:
        BusSettings(time_limits=text).limits()
    assert err.value.detail["setting"] == "bus.time_limits"


def test_a_time_limit_for_an_unknown_actor_is_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match="no-such-actor"):
        make_runtime(tmp_path, bus={"time_limits": "no-such-actor=5"})


def test_the_watchdog_never_fires_after_disarm():
    """Deadlines at the edge of the work, many times over: each disarm either stops
    the deadline or reports it fired, and no interruption ever lands afterwards."""
    watchdog = Watchdog()
    fired = 0
    for n in range(300):
        token = watchdog.arm(0.001 * (n % 4))
        try:
            end = time.monotonic() + 0.002
            while time.monotonic() < end:
                pass
        except Interrupted:
            pass
        fired += watchdog.disarm(token)
        for _ in range(200):  # an interruption landing late would surface here
            pass
    assert 0 < fired <= 300
    assert watchdog.disarm(watchdog.arm(60)) is False


def test_the_watchdog_wakes_for_a_deadline_sooner_than_the_one_it_waits_for():
    watchdog = Watchdog()
    later = watchdog.arm(60)
    time.sleep(0.05)  # it now sleeps until the 60 s deadline
    sooner = watchdog.arm(0.1)
    began = time.monotonic()
    with pytest.raises(Interrupted):
        while time.monotonic() - began < 5:
            pass
    assert time.monotonic() - began < 2
    assert watchdog.disarm(sooner) is True
    assert watchdog.disarm(later) is False


# -- logging -------------------------------------------------------------------------------


def test_a_delivery_is_logged_once_per_outcome(runtime: Runtime, caplog):
    job = make_job(runtime)
    with caplog.at_level(logging.DEBUG, logger="pipelinejobs.delivery"):
        execution = runtime.submit(MANAGER, update(runtime, job))
        bus(runtime).join()
        runtime.deliver(MANAGER, execution["id"])
    lines = [r.getMessage() for r in caplog.records if r.name == "pipelinejobs.delivery"]
    assert any(execution["id"] in line and "COMPLETE in" in line for line in lines)
    assert any("redelivery ignored" in line for line in lines)


# -- the stub bus fails fast ---------------------------------------------------------------


def test_join_reraises_a_crash_in_a_child_execution(runtime: Runtime, monkeypatch):
    def broken(ctx, msg):
        raise KeyError("indexer bug")

    monkeypatch.setattr(runtime.actors["jobs-indexer"], "handle", broken)
    job = make_job(runtime, index={"level": "1"}, state="RUNNING")
    runtime.submit(MANAGER, {"uuid": job["uuid"], "name": "finish", "token": token(runtime, job)})
    with pytest.raises(KeyError, match="indexer bug"):
        bus(runtime).join()


def test_join_without_fail_fast_records_the_crash_and_goes_on(runtime: Runtime, monkeypatch):
    monkeypatch.setattr(runtime.actors[MANAGER], "handle", lambda ctx, msg: {}["missing"])
    job = make_job(runtime)
    first = runtime.submit(MANAGER, update(runtime, job))
    second = runtime.submit(MANAGER, update(runtime, job, data={"n": 2}))
    assert bus(runtime).join(fail_fast=False) == 2
    for execution in (first, second):
        assert runtime.executions.get(execution["id"])["error"]["error"] == "InternalError"
    # A redelivery of the crashed one is skipped, and not reported as a crash again.
    bus(runtime).publish(MANAGER, first["id"])
    assert bus(runtime).join() == 1


def test_errors_an_actor_raises_on_purpose_are_outcomes_not_crashes(runtime: Runtime):
    job = make_job(runtime)
    execution = runtime.submit(MANAGER, {"uuid": job["uuid"], "name": "update"})  # no token
    assert bus(runtime).join() == 1
    assert runtime.executions.get(execution["id"])["error"]["error"] == "PermissionDenied"


# -- the hard limit (prefork) --------------------------------------------------------------


def test_an_execution_whose_process_was_killed_is_closed(runtime: Runtime):
    seen: list[tuple[str, str]] = []

    class Expired(Middleware):
        def after_expire(self, alias: str, execution: Any) -> None:
            seen.append((alias, execution["status"]))

    runtime.middleware.append(Expired())
    job = make_job(runtime)
    execution = runtime.submit(MANAGER, update(runtime, job))
    runtime.executions.start(execution["id"], "pool-process-1")
    runtime.executions.progress(execution["id"], {"n": 1}, logs=["an earlier line"])
    done = runtime.expire(MANAGER, execution["id"], 1830.0)
    assert done is not None and done["status"] == "ERROR"
    assert done["error"]["error"] == "TimeLimitExceeded" and done["error"]["limit"] == 1830.0
    assert done["logs"][0] == "an earlier line" and "killed" in done["logs"][-1]
    assert seen == [(MANAGER, "ERROR")]
    # Already closed (or finished meanwhile): left as it is.
    assert runtime.expire(MANAGER, execution["id"], 1830.0) == done
    assert seen == [(MANAGER, "ERROR")]
