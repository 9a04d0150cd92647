"""``jobs watch`` and ``executions watch`` against a real HTTP gateway, and the bar.

The gateway runs on a thread (werkzeug's server around the app, on a stub-bus
runtime); a second thread plays what happens to the job — events applied, an
indexer's progress written — while the command polls in the test's own thread.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from pipelinejobs.cli import main, watch
from pipelinejobs.domain.lifecycle import State
from pipelinejobs.gateway import create_app
from pipelinejobs.runtime.dispatch import Runtime
from tests.actors.jobs_support import make_job, token
from tests.support import make_runtime
from tests.support import stub as bus

UNKNOWN_JOB = "1073f4ff-c2b9-5190-bd9a-e6a406d9796a"


class Quiet(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002
        pass


@dataclass
class Served:
    rt: Runtime
    url: str
    key: str

    def cli(self, capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--url", self.url, "--key", self.key, "--interval", "0.02",
                     "--timeout", "30"])  # fmt: skip
        out, err = capsys.readouterr()
        return code, out, err


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    rt = make_runtime(tmp_path, "sqlite")
    app = create_app(rt)
    key, _ = app.config["PIPELINEJOBS"].keys.create("admin")
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield Served(rt, f"http://127.0.0.1:{server.server_port}", key)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
        rt.close()


@pytest.fixture
def later() -> Iterator[Callable[..., None]]:
    """Run steps on a thread, a little apart, while the command watches."""
    threads: list[threading.Thread] = []
    failures: list[BaseException] = []

    def play(*steps: Callable[[], Any], pause: float = 0.1) -> None:
        def script() -> None:
            try:
                for step in steps:
                    time.sleep(pause)
                    step()
            except BaseException as exc:  # reported by the test, not lost on the thread
                failures.append(exc)

        thread = threading.Thread(target=script, daemon=True)
        threads.append(thread)
        thread.start()

    yield play
    for thread in threads:
        thread.join(30)
    if failures:
        raise failures[0]


def apply(rt: Runtime, job: dict, event: str, **data: Any) -> Callable[[], None]:
    return lambda: rt.jobs.apply(job["uuid"], event, data, sender="key:3f9a0c21d4e7")


def rows(out: str) -> list[list[str]]:
    """The event lines of a watch: [date, event, state, sender, detail...]."""
    return [line.split() for line in out.splitlines() if line[:4].isdigit()]


def test_a_job_is_followed_until_it_finishes(
    served: Served, later: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    rt = served.rt
    job = make_job(rt)
    later(
        apply(rt, job, "run"),
        apply(rt, job, "update", status="HEARTBEAT"),
        apply(rt, job, "finish"),
    )
    code, out, _ = served.cli(capsys, "jobs", "watch", job["uuid"])
    assert code == 0
    assert [r[1:4] for r in rows(out)] == [
        ["create", "CREATED", "-"],
        ["run", "RUNNING", "key:3f9a0c21d4e7"],
        ["update", "RUNNING", "key:3f9a0c21d4e7"],
        ["finish", "FINISHED", "key:3f9a0c21d4e7"],
    ]
    assert rows(out)[2][4] == "HEARTBEAT"
    assert out.splitlines()[-1] == "FINISHED"  # the result alone on the last line


def test_a_failed_job_exits_non_zero_saying_why(
    served: Served, later: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    rt = served.rt
    job = make_job(rt, state="RUNNING")
    later(apply(rt, job, "fail", reason="out of memory"))
    code, out, err = served.cli(capsys, "jobs", "watch", job["uuid"])
    assert code == 1
    assert out.splitlines()[-2].endswith("fail      FAILED     key:3f9a0c21d4e7  out of memory")
    assert out.splitlines()[-1] == "FAILED"
    assert f"job {job['uuid']} is FAILED" in err


def test_an_unknown_job_is_named(served: Served, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = served.cli(capsys, "jobs", "watch", UNKNOWN_JOB)
    assert code == 2 and out == ""
    assert f"no job {UNKNOWN_JOB}" in err and "404" in err and "Traceback" not in err


def test_until_stops_at_the_state_asked_for(
    served: Served, later: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    rt = served.rt
    job = make_job(rt)
    later(apply(rt, job, "run"))
    code, out, _ = served.cli(capsys, "jobs", "watch", job["uuid"], "--until", "running")
    assert code == 0 and out.splitlines()[-1] == "RUNNING"


def test_until_a_state_the_job_can_no_longer_reach_fails(
    served: Served, later: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    rt = served.rt
    job = make_job(rt, state="RUNNING")
    later(apply(rt, job, "fail", reason="no"))
    code, out, err = served.cli(capsys, "jobs", "watch", job["uuid"], "--until", "FINISHED")
    assert code == 1 and out.splitlines()[-1] == "FAILED"
    assert "will not reach FINISHED" in err


def test_a_job_that_asked_for_indexing_is_followed_through_it_with_its_progress(
    served: Served, later: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    rt = served.rt
    job = make_job(rt, state="RUNNING", index={"patterns": [], "level": "1"})
    indexing, _ = rt.executions.submit(INDEXER := "jobs-indexer", {"uuid": job["uuid"]})
    execution = indexing["id"]

    def start() -> None:
        rt.executions.start(execution)
        rt.jobs.apply(job["uuid"], "index", {"execution": execution}, sender="jobs-manager")

    def progress(seen: int, total: int | None, phase: str = "indexing") -> Callable[[], None]:
        values = {"phase": phase, "files_seen": seen, "files_indexed": seen // 2,
                  "files_total": total, "elapsed": seen / 100}  # fmt: skip
        return lambda: rt.executions.progress(execution, values, attempt=1)

    def end() -> None:
        rt.executions.finish(execution, result={"seen": 1000})
        rt.jobs.apply(job["uuid"], "indexed", sender=INDEXER)

    later(
        apply(rt, job, "finish"),
        start,
        progress(200, None),
        progress(500, 1000),
        progress(1000, 1000, "done"),
        end,
        pause=0.3,
    )
    code, out, err = served.cli(capsys, "jobs", "watch", job["uuid"])
    assert code == 0
    assert [r[1:3] for r in rows(out)][-3:] == [
        ["finish", "FINISHED"],
        ["index", "INDEXING"],
        ["indexed", "FINISHED"],
    ]
    assert out.splitlines()[-1] == "FINISHED"
    assert "waiting for the indexing" in err  # FINISHED is not the end of this job
    # Not a terminal: progress lines on stderr, the last one the final state.
    bars = [line for line in err.splitlines() if "files" in line]
    assert bars and bars[-1].startswith("[########################] 100%  1,000/1,000 files")
    assert bars[-1].endswith("done")


def test_ctrl_c_ends_the_watch_quietly(
    served: Served, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    job = make_job(served.rt, state="RUNNING")

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(watch.time, "sleep", interrupted)
    code, out, err = served.cli(capsys, "jobs", "watch", job["uuid"])
    assert code == 130 and "Traceback" not in err
    assert [r[2] for r in rows(out)] == ["CREATED", "RUNNING"]


def test_what_a_job_says_cannot_drive_the_terminal(
    served: Served, later: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    rt = served.rt
    job = make_job(rt, state="RUNNING")
    later(apply(rt, job, "fail", reason="\x1b[2J\x1b]0;owned\x07gone"))
    code, out, _ = served.cli(capsys, "jobs", "watch", job["uuid"])
    assert code == 1 and "\x1b" not in out and "\x07" not in out
    assert "\\x1b[2J\\x1b]0;owned\\x07gone" in out


def test_an_execution_is_followed_to_its_end(
    served: Served, later: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    rt = served.rt
    job = make_job(rt)
    ok = rt.submit("jobs-manager", {"uuid": job["uuid"], "name": "run", "token": token(rt, job)})
    later(lambda: bus(rt).join())
    code, out, _ = served.cli(capsys, "executions", "watch", "jobs-manager", ok["id"])
    assert code == 0
    assert out.splitlines()[0].endswith("SUBMITTED") and out.splitlines()[-1] == "COMPLETE"

    refused = rt.submit("jobs-manager", {"uuid": job["uuid"], "name": "ready",
                                         "token": token(rt, job)})  # fmt: skip
    later(lambda: bus(rt).join(fail_fast=False))
    code, out, err = served.cli(capsys, "executions", "watch", "jobs-manager", refused["id"])
    assert code == 1 and out.splitlines()[-1] == "ERROR"
    assert f"execution {refused['id']} failed: " in err


def test_executions_watch_needs_an_actor_and_an_execution(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = served.cli(capsys, "executions", "watch", "jobs-manager")
    assert code == 2 and "watch ACTOR EXECUTION" in err
    code, _, err = served.cli(capsys, "executions", "watch", "jobs-manager", "0123456789abc")
    assert code == 2 and "no execution 0123456789abc of actor jobs-manager" in err


def test_executions_without_watch_still_lists(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = served.cli(capsys, "executions", "jobs-manager")
    assert code == 0 and out == "no executions of jobs-manager\n"


# -- what "done" means, from the lifecycle table -------------------------------------------


def test_the_terminal_states_come_from_the_lifecycle_table() -> None:
    assert watch.TERMINAL == {"FAILED", "REJECTED", "FINALIZED", "RETIRED"}


@pytest.mark.parametrize(
    ("state", "last_event", "job", "done"),
    [
        ("RUNNING", "run", {}, False),
        ("FINISHED", "finish", {}, True),
        ("FINISHED", "finish", {"index": {"level": "1"}}, False),  # indexing to come
        ("INDEXING", "index", {"index": {"level": "1"}}, False),
        ("FINISHED", "indexed", {"index": {"level": "1"}}, True),
        ("VALIDATED", "validated", {}, True),
        ("RESET", "reset", {}, False),  # an admin's ready is to come
        ("FAILED", "fail", {}, True),
        ("RETIRED", "retire", {}, True),
    ],
)
def test_is_done(state: str, last_event: str, job: dict, done: bool) -> None:
    assert watch.is_done(State(state).value, last_event, job) is done


# -- the bar --------------------------------------------------------------------------------


def test_describe() -> None:
    assert (
        watch.describe(
            {"files_seen": 500, "files_indexed": 250, "files_total": 1000, "elapsed": 2.0}
        )
        == "[############............]  50%  500/1,000 files, 250 indexed  250 files/s  ETA 0:02"
    )
    assert watch.describe({"files_seen": 7, "files_indexed": 0, "files_total": None}) == (
        "7 files seen, 0 indexed (counting the total)"
    )
    done = {"files_seen": 4, "files_indexed": 2, "files_total": 4, "phase": "done",
            "files_vanished": 1, "attempt": 2}  # fmt: skip
    assert watch.describe(done) == (
        "[########################] 100%  4/4 files, 2 indexed  done, 1 vanished  (attempt 2)"
    )
    assert watch.describe({"files_seen": 0, "files_indexed": 0, "files_total": 0}).startswith(
        "[########################] 100%  0 files"
    )


def test_on_a_terminal_the_bar_is_redrawn_in_place() -> None:
    stream = io.StringIO()
    bar = watch.Bar(stream, tty=True)
    bar.update({"files_seen": 1, "files_total": 2})
    bar.update({"files_seen": 2, "files_total": 2})
    bar.clear()
    bar.redraw()
    bar.close()
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert text.count("\r") == 5 and "\x1b[K" in text  # 2 updates, clear, redraw, close


def test_elsewhere_the_bar_is_a_line_every_few_seconds_and_its_last_state() -> None:
    stream, now = io.StringIO(), [0.0]
    bar = watch.Bar(stream, tty=False, every=5, clock=lambda: now[0])
    for seen in range(1, 11):
        bar.update({"files_seen": seen, "files_total": 10})
        now[0] += 1
    bar.close()
    shown = [line.split()[2] for line in stream.getvalue().splitlines()]
    assert shown == ["1/10", "6/10", "10/10"]
