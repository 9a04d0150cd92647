"""The process log's line per execution outcome (the ExecutionLogging middleware)."""

from __future__ import annotations

import json
import re
from typing import Any

from pipelinejobs.errors import StoreUnavailable
from pipelinejobs.runtime.dispatch import Runtime
from pipelinejobs.runtime.middleware import job_named
from tests.actors.jobs_support import make_job, token
from tests.observability.log_capture import capture
from tests.support import make_runtime
from tests.support import stub as bus

MANAGER = "jobs-manager"
LINE = re.compile(r"^\S+Z (?P<level>\w+) +(?P<text>.*)$")


def outcome_lines(text: str) -> list[tuple[str, str]]:
    found = [LINE.match(line) for line in text.splitlines()]
    return [(m["level"], m["text"]) for m in found if m and " exec=" in m["text"]]


def event(rt: Runtime, job: dict, name: str, **extra: Any) -> dict:
    return {"uuid": job["uuid"], "name": name, "token": token(rt, job), **extra}


def test_a_completed_execution_is_one_info_line_naming_actor_execution_and_job(
    runtime: Runtime,
) -> None:
    job = make_job(runtime)
    with capture() as out:
        execution = runtime.submit(MANAGER, event(runtime, job, "update"))
        bus(runtime).join()
    ((level, text),) = outcome_lines(out.getvalue())
    assert level == "INFO"
    assert re.fullmatch(
        rf"{MANAGER} exec={execution['id']} job={job['uuid']} COMPLETE in \d+\.\d ms", text
    ), text


def test_the_json_line_carries_the_fields(runtime: Runtime) -> None:
    job = make_job(runtime)
    with capture("json") as out:
        execution = runtime.submit(MANAGER, event(runtime, job, "update"))
        bus(runtime).join()
    records = [json.loads(line) for line in out.getvalue().splitlines()]
    (line,) = [r for r in records if r.get("event") == "execution"]
    assert line["logger"] == "pipelinejobs.delivery" and line["level"] == "INFO"
    assert (line["actor"], line["execution"], line["job"]) == (
        MANAGER,
        execution["id"],
        job["uuid"],
    )
    assert line["outcome"] == "COMPLETE" and line["attempt"] == 1 and line["error"] is None
    assert isinstance(line["duration_ms"], float)


def test_a_failure_is_an_error_line_naming_the_error_not_its_message(runtime: Runtime) -> None:
    job = make_job(runtime, state="RUNNING")
    with capture() as out:
        # A wrong token: the refusal's message must not put anything of it in the log.
        message = {**event(runtime, job, "reset"), "token": "0123456789abcdef"}
        execution = runtime.submit(MANAGER, message)
        bus(runtime).join()
    assert runtime.executions.get(execution["id"])["status"] == "ERROR"
    ((level, text),) = outcome_lines(out.getvalue())
    assert level == "ERROR"
    assert text.startswith(f"{MANAGER} exec={execution['id']} job={job['uuid']} ERROR in ")
    assert text.endswith(": PermissionDenied")
    assert "0123456789abcdef" not in out.getvalue()


def test_a_retry_is_a_warning_and_a_redelivery_an_info_line(tmp_path, monkeypatch) -> None:
    rt = make_runtime(tmp_path, bus={"max_retries": 3, "retry_backoff": 0})
    try:
        job = make_job(rt)
        failures = [StoreUnavailable("store restarting")]

        def handle(ctx: Any, msg: Any) -> dict:
            if failures:
                raise failures.pop()
            return {"ok": True}

        monkeypatch.setattr(rt.actors[MANAGER], "handle", handle)
        with capture() as out:
            execution = rt.submit(MANAGER, event(rt, job, "update"))
            bus(rt).join()
            rt.deliver(MANAGER, execution["id"])  # a redelivery of a finished execution
        (retry, done, skipped) = outcome_lines(out.getvalue())
        assert retry[0] == "WARNING" and "will be retried" in retry[1]
        assert retry[1].endswith(": StoreUnavailable")
        assert done[0] == "INFO" and "COMPLETE in" in done[1] and "(attempt 2)" in done[1]
        assert skipped == (
            "INFO",
            f"{MANAGER} exec={execution['id']} job={job['uuid']} already COMPLETE; "
            f"redelivery ignored",
        )
    finally:
        rt.close()


def test_the_job_is_found_in_the_message_the_parameters_or_the_result() -> None:
    job = "1073f4ff-c2b9-5190-bd9a-e6a406d9796a"
    pipeline = "1064aaf1-459c-5e42-820d-b822aa4b3990"
    assert job_named({"message": {"uuid": job}}) == job
    assert job_named({"message": {}, "params": {"uuid": job}}) == job
    assert job_named({"message": {"name": "x"}, "result": {"uuid": job}}) == job  # a launch
    assert job_named({"message": {"uuid": pipeline}, "result": {"uuid": pipeline}}) is None
    assert job_named({"message": {"uuid": "107-not-a-uuid"}, "result": None}) is None


def test_an_execution_keeps_its_first_and_newest_lines_and_says_how_many_went() -> None:
    """A bulk action logs a line per job; its record keeps a bounded log."""
    from pipelinejobs.runtime.actor import ExecutionLog

    log = ExecutionLog("AAAAAAAAAAAAA", MANAGER, lambda: 0.0)
    total = ExecutionLog.MAX_LINES + 250
    for n in range(total):
        log.info(f"line {n}")
    assert len(log.lines) == ExecutionLog.MAX_LINES + 1
    head, mark, tail = (
        log.lines[: ExecutionLog.HEAD],
        log.lines[ExecutionLog.HEAD],
        log.lines[ExecutionLog.HEAD + 1 :],
    )
    assert [line.rsplit(" ", 1)[1] for line in head] == [str(n) for n in range(ExecutionLog.HEAD)]
    assert "WARNING ... 250 lines not kept here" in mark
    assert [line.rsplit(" ", 1)[1] for line in tail] == [
        str(n) for n in range(total - len(tail), total)
    ]
    assert len(head) + len(tail) + 250 == total
