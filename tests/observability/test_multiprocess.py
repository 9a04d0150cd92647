"""Multi-process metrics: which directory, emptied once per start of the system (not
per process), and the counts of separate processes added up on one page.

Every process here is a real one (``python -c``): the mode is process-wide, so
the test's own process is never switched to it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pipelinejobs.config import load_config
from pipelinejobs.observability import multiprocess
from tests.observability.samples import sample

ROOT = Path(__file__).resolve().parents[2]


def python(code: str, **popen: object) -> subprocess.Popen[str]:
    """Start ``code`` in a new interpreter (stdin and stdout piped)."""
    env = {k: v for k, v in os.environ.items() if k != multiprocess.ENV}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(  # type: ignore[call-overload,no-any-return]
        [sys.executable, "-c", textwrap.dedent(code)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        **popen,
    )


def finish(proc: subprocess.Popen[str], stdin: str = "") -> str:
    out, _ = proc.communicate(stdin, timeout=60)
    assert proc.returncode == 0, out
    return out


def test_the_directory_is_the_setting_else_the_variable_else_in_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(multiprocess.ENV, raising=False)
    data = {"system": {"data_dir": str(tmp_path / "data")}}
    assert multiprocess.directory(load_config(env={}, overrides=data)) == tmp_path / "data/metrics"
    monkeypatch.setenv(multiprocess.ENV, str(tmp_path / "from-env"))
    assert multiprocess.directory(load_config(env={}, overrides=data)) == tmp_path / "from-env"
    setting = {**data, "metrics": {"dir": str(tmp_path / "set")}}
    assert multiprocess.directory(load_config(env={}, overrides=setting)) == tmp_path / "set"


CLAIM = """
    import sys
    from pathlib import Path
    from pipelinejobs.observability import multiprocess
    print(multiprocess.claim(Path(sys.argv[1])), flush=True)
    sys.stdin.read()  # hold the claim until told to go
"""


def claim_in_a_process(path: Path) -> subprocess.Popen[str]:
    proc = python(CLAIM.replace("sys.argv[1]", repr(str(path))))
    assert proc.stdout is not None
    proc.first_line = proc.stdout.readline().strip()  # type: ignore[attr-defined]
    return proc


def test_the_directory_is_emptied_by_the_first_process_only(tmp_path: Path) -> None:
    path = tmp_path / "metrics"
    path.mkdir()
    for name in ("counter_11.db", "histogram_11.db", "gauge_livesum_12.db", "notes.txt"):
        (path / name).write_text("x")

    first = claim_in_a_process(path)
    try:
        assert first.first_line == "True"  # type: ignore[attr-defined]
        assert sorted(p.name for p in path.iterdir()) == [".live", ".starting", "notes.txt"]
        (path / "counter_13.db").write_text("written by a process of this start")

        second = claim_in_a_process(path)  # joins: the first is alive
        assert second.first_line == "False"  # type: ignore[attr-defined]
        finish(second)
        assert (path / "counter_13.db").exists()
    finally:
        finish(first)

    again = claim_in_a_process(path)  # a new start: nobody left from the last one
    assert again.first_line == "True"  # type: ignore[attr-defined]
    finish(again)
    assert not (path / "counter_13.db").exists() and (path / "notes.txt").exists()


def test_a_claim_outlives_the_process_in_the_processes_it_forked(tmp_path: Path) -> None:
    """gunicorn's workers and Celery's pool processes inherit the claim: a master gone
    while its children still write leaves the directory claimed."""
    path = tmp_path / "metrics"
    parent = python(
        f"""
        import os, sys
        from pathlib import Path
        from pipelinejobs.observability import multiprocess
        multiprocess.claim(Path({str(path)!r}))
        child = os.fork()
        if child == 0:
            sys.stdin.read()  # the child holds on
            os._exit(0)
        print(child, flush=True)  # the parent exits at once
        """
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert parent.wait(30) == 0
    try:
        joined = claim_in_a_process(path)
        assert joined.first_line == "False"  # type: ignore[attr-defined]
        finish(joined)
    finally:
        assert parent.stdin is not None
        parent.stdin.close()
        parent.stdout.close()
        deadline_wait(child)


def deadline_wait(pid: int) -> None:
    """Wait for ``pid`` (not our child) to be gone."""
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    os.kill(pid, 9)


WORK = """
    import sys
    from pathlib import Path
    from pipelinejobs import signals
    from pipelinejobs.observability import metrics, multiprocess
    multiprocess.enable(Path({path!r}))
    recorded = metrics.current()
    for _ in range({n}):
        recorded.message("jobs-manager", 200)
        recorded.execution("jobs-manager", "complete", 0.01)
        signals.event_applied.send(event="finish", state="FINISHED")
    print("done", flush=True)
"""

SCRAPE = """
    import sys
    from pathlib import Path
    from pipelinejobs.observability import exposition, multiprocess
    multiprocess.enable(Path({path!r}))
    sys.stdout.write(exposition.render().decode())
"""


def test_processes_writing_to_one_directory_add_up_on_one_page(tmp_path: Path) -> None:
    path = tmp_path / "metrics"
    multiprocess.claim(path)
    try:
        for n in (3, 4):
            assert finish(python(WORK.format(path=str(path), n=n))).strip() == "done"
        page = finish(python(SCRAPE.format(path=str(path))))
    finally:
        multiprocess.release(path)
    assert len(list(path.glob("counter_*.db"))) >= 2  # one file per process
    labels = {"actor": "jobs-manager", "code": "200", "outcome": "accepted"}
    assert sample(page, "pipelinejobs_messages_total", **labels) == 7
    assert sample(page, "pipelinejobs_events_applied_total", event="finish") == 7
    duration = "pipelinejobs_execution_duration_seconds_count"
    assert sample(page, duration, actor="jobs-manager", outcome="complete") == 7


def test_a_dead_process_live_gauges_are_dropped(tmp_path: Path) -> None:
    path = tmp_path / "metrics"
    out = finish(
        python(
            f"""
            from pathlib import Path
            from prometheus_client import Gauge
            from pipelinejobs.observability import multiprocess
            multiprocess.enable(Path({str(path)!r}))
            Gauge("in_flight", "x", multiprocess_mode="livesum").set(3)
            import os
            print(os.getpid(), flush=True)
            """
        )
    )
    pid = int(out.strip())
    assert (path / f"gauge_livesum_{pid}.db").exists()
    finish(
        python(
            f"""
            from pathlib import Path
            from pipelinejobs.observability import multiprocess
            multiprocess.enable(Path({str(path)!r}))
            multiprocess.process_died({pid})
            """
        )
    )
    assert not (path / f"gauge_livesum_{pid}.db").exists()


def test_a_directory_that_cannot_be_used_does_not_stop_a_process(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    config = load_config(env={}, overrides={"metrics": {"dir": str(blocked / "metrics")}})
    with caplog.at_level("WARNING", "pipelinejobs.metrics"):
        assert multiprocess.start(config) is None
        assert multiprocess.join(config) is None
    assert multiprocess.active() is None  # this process still counts, in memory
    assert caplog.text.count("metrics: cannot use") == 2
