"""A launch's deadline and heartbeat_timeout (issue 16): where they come from (launch >
pipeline > config), how a bad one is refused, and what a retry policy does with a
reconciler's failure — through the launcher-proxy and jobs-manager on the stub bus."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.domain.clock import iso, parse
from pipelinejobs.errors import ValidationError
from pipelinejobs.runtime.dispatch import Runtime
from tests.actors.test_launcher_proxy import LAUNCH, launched, pipeline_definition, register
from tests.support import FakeClock, make_runtime, stub


def callback_launch(**extra: Any) -> dict[str, Any]:
    """A job that runs elsewhere: RUNNING once launched, until a backend reports."""
    message = copy.deepcopy(LAUNCH)
    message["job_definition"]["launcher"] = "callback"
    message.update(extra)
    return message


def test_the_launch_wins_over_the_pipeline_over_the_config(tmp_path: Path) -> None:
    rt = make_runtime(tmp_path, reconciler={"deadline": 7200.0, "heartbeat_timeout": 600.0})
    try:
        register(rt, {**pipeline_definition(), "heartbeat_timeout": "00:02:00"})
        job = rt.jobs.get(launched(rt, callback_launch(deadline="30m"))["uuid"])
        assert (job["deadline"], job["heartbeat_timeout"]) == (1800.0, 120.0)
        assert parse(job["deadline_at"]) - parse(job["created"]) == pytest.approx(1800)
        plain = launched(rt, callback_launch(data={"n": 2}))
        job = rt.jobs.get(plain["uuid"])
        assert (job["deadline"], job["heartbeat_timeout"]) == (7200.0, 120.0)
    finally:
        rt.close()


def test_a_job_without_limits_has_no_times(runtime: Runtime) -> None:
    register(runtime)
    job = runtime.jobs.get(launched(runtime, callback_launch())["uuid"])
    assert not {"deadline", "heartbeat_timeout", "deadline_at", "silent_at"} & set(job)


@pytest.mark.parametrize(
    ("field", "value"),
    [("deadline", "10001d"), ("heartbeat_timeout", "soon"), ("deadline", -5)],
)
def test_a_bad_limit_is_refused_at_the_door_naming_its_field(
    runtime: Runtime, field: str, value: Any
) -> None:
    register(runtime)
    with pytest.raises(ValidationError) as refused:
        runtime.submit("launcher-proxy", callback_launch(**{field: value}))
    assert refused.value.detail["path"] == field
    assert runtime.store.count("executions") == 1  # the pipeline's registration only


def test_a_bad_pipeline_default_is_refused_naming_its_field(runtime: Runtime) -> None:
    with pytest.raises(ValidationError) as refused:  # its schema says so, at the door
        runtime.submit("pipelines-manager", {**pipeline_definition(), "deadline": "10001d"})
    assert refused.value.detail["path"] == "deadline"
    assert runtime.store.count("pipelines") == 0


@pytest.mark.parametrize(("on", "retried"), [(None, False), (["FAILED"], False),
                                             (["deadline"], True)])  # fmt: skip
def test_a_deadline_failure_is_retried_only_when_the_policy_names_it(
    tmp_path: Path, on: list[str] | None, retried: bool
) -> None:
    clock = FakeClock()
    rt = make_runtime(tmp_path, clock=clock)
    try:
        register(rt)
        policy: dict[str, Any] = {"limit": 2, "backoff": 0}
        if on is not None:
            policy["on"] = on
        uuid = launched(rt, callback_launch(deadline=60, retry=policy))["uuid"]
        clock.advance(61)
        rt.reconciler.run()
        stub(rt).join()
        job = rt.jobs.get(uuid)
        if not retried:
            assert job["state"] == "FAILED" and "attempt" not in job
            return
        # Attempt 2 is launched again, with its whole deadline from its start.
        assert job["attempt"] == 2 and job["state"] == "RUNNING"
        assert job["deadline_at"] == iso(clock() + 60)
    finally:
        rt.close()


def test_a_pipelines_default_can_be_changed_and_applies_to_later_jobs(runtime: Runtime) -> None:
    uuid, _ = register(runtime)
    first = runtime.jobs.get(launched(runtime, callback_launch())["uuid"])
    assert "deadline" not in first
    updated = runtime.pipelines.update(uuid, {"deadline": "1h"}).pipeline
    assert updated["deadline"] == 3600.0
    later = runtime.jobs.get(launched(runtime, callback_launch(data={"n": 2}))["uuid"])
    assert later["deadline"] == 3600.0
    with pytest.raises(ValidationError) as refused:
        runtime.pipelines.update(uuid, {"heartbeat_timeout": "soon"})
    assert refused.value.detail["path"] == "heartbeat_timeout"
