"""The reconciler: overdue jobs failed once, with their reason, whoever runs it and how
many at once; a heartbeat that lands in between saves the job; lost supervisors are
reaped by the periodic pass, not only at start-up."""

from __future__ import annotations

import json
import multiprocessing
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pipelinejobs.adapters.bus.stub import StubBus
from pipelinejobs.adapters.store.sqlite import SQLiteStore
from pipelinejobs.domain.clock import Clock, system_clock
from pipelinejobs.runtime.dispatch import Runtime
from pipelinejobs.runtime.reconciler import SENDER
from tests.support import FakeClock, make_runtime, runtime_config, stub

PIPELINE = {"name": "limits", "components": [{"repo": "sd2e/limits:0.1"}]}


def make(rt: Runtime, n: int, run: bool = True, **limits: float) -> str:
    pipeline = rt.pipelines.create(PIPELINE).pipeline
    job = rt.jobs.create(
        pipeline_uuid=pipeline["uuid"], linkage=[f"sample.{n}"], data={"n": n}, fields=limits
    ).job
    if run:
        rt.jobs.apply(job["uuid"], "run")
    return str(job["uuid"])


def fails(rt: Runtime, uuid: str) -> list[dict[str, Any]]:
    return [h for h in rt.jobs.history(uuid, detailed=True).entries if h["name"] == "fail"]


def test_overdue_jobs_are_failed_once_with_the_reason(tmp_path: Path) -> None:
    clock = FakeClock()
    rt = make_runtime(tmp_path, "sqlite", clock=clock)
    try:
        late = make(rt, 1, deadline=1800)
        silent = make(rt, 2, heartbeat_timeout=5)
        fine = make(rt, 3, deadline=3600, heartbeat_timeout=3600)
        clock.advance(1801)
        done = rt.reconciler.run()
        assert sorted(o.uuid for o in done.overdue) == sorted([late, silent])
        stub(rt).join()
        for uuid, reason in (
            (late, "deadline 00:30:00 passed"),
            (silent, "no heartbeat for 5 s (heartbeat_timeout)"),
        ):
            [fail] = fails(rt, uuid)
            assert rt.jobs.get(uuid)["state"] == "FAILED"
            assert fail["data"]["reason"] == reason and fail["sender"] == SENDER
        assert rt.jobs.get(fine)["state"] == "RUNNING"
        assert rt.reconciler.run().overdue == []  # failed: out of the index range
    finally:
        rt.close()


def test_a_heartbeat_between_the_query_and_the_write_saves_the_job(tmp_path: Path) -> None:
    clock = FakeClock()
    rt = make_runtime(tmp_path, "memory", clock=clock)
    try:
        uuid = make(rt, 1, heartbeat_timeout=5)
        clock.advance(6)
        [sent] = rt.reconciler.fail_overdue()  # queued, not yet delivered
        rt.jobs.apply(uuid, "update", {"status": "HEARTBEAT"})  # the backend speaks
        stub(rt).join()
        assert rt.jobs.get(uuid)["state"] == "RUNNING" and fails(rt, uuid) == []
        execution = rt.executions.get(
            next(iter(rt.store.find("executions", {"job": uuid}).items))["id"]
        )
        assert "no longer past its heartbeat" in execution["result"]["ignored"]
        # Silent again: a new time, so a new key, and this time it is failed.
        clock.advance(6)
        assert [o.at for o in rt.reconciler.fail_overdue()] != [sent.at]
        stub(rt).join()
        assert rt.jobs.get(uuid)["state"] == "FAILED"
    finally:
        rt.close()


def test_the_periodic_pass_reaps_a_supervisor_lost_while_workers_run(tmp_path: Path) -> None:
    from pipelinejobs.adapters.launchers.supervisor import HOST

    rt = make_runtime(tmp_path, "memory")
    try:
        uuid = make(rt, 1)
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait()
        rt.config.log_dir.mkdir(parents=True, exist_ok=True)
        marker = rt.config.log_dir / f"{uuid}.execA.launch"
        record = {"state": "started", "host": HOST, "identity": "boot:gone"}
        marker.write_text(json.dumps({**record, "started": {"supervisor": gone.pid}}))
        assert rt.reconciler.run().lost == [uuid]
        stub(rt).join()
        assert rt.jobs.get(uuid)["state"] == "FAILED"
        assert rt.reconciler.run().lost == []
    finally:
        rt.close()


# -- two reconcilers at once ----------------------------------------------------------------

JOBS = 40


def shared_runtime(tmp_path: Path, clock: Clock = system_clock) -> Runtime:
    """A runtime on the SQLite file every reconciler here shares, with a bus of its own."""
    bus = StubBus()
    store = SQLiteStore(tmp_path / "shared.sqlite3")
    rt = Runtime(runtime_config(tmp_path), store=store, bus=bus, clock=clock)
    bus.deliver = rt.deliver
    return rt


def overdue_jobs(tmp_path: Path) -> list[str]:
    """JOBS jobs, half past their deadline and half silent, made an hour ago."""
    rt = shared_runtime(tmp_path, FakeClock(time.time() - 3600))
    try:
        return [
            make(rt, n, **({"deadline": 60} if n % 2 else {"heartbeat_timeout": 5}))
            for n in range(JOBS)
        ]
    finally:
        rt.close()


def reconcile(tmp_path: Path, start: Any) -> None:
    """One reconciler: wait for the others, run a pass, deliver what it sent."""
    rt = shared_runtime(tmp_path)
    try:
        start.wait(30)
        rt.reconciler.run()
        stub(rt).join()
    finally:
        rt.close()


def assert_failed_once(tmp_path: Path, uuids: list[str]) -> None:
    rt = shared_runtime(tmp_path)
    try:
        for uuid in uuids:
            assert rt.jobs.get(uuid)["state"] == "FAILED"
            assert len(fails(rt, uuid)) == 1, rt.jobs.history(uuid).entries
    finally:
        rt.close()


def test_two_reconcilers_in_threads_fail_each_job_once(tmp_path: Path) -> None:
    uuids = overdue_jobs(tmp_path)
    start = threading.Barrier(3)
    threads = [threading.Thread(target=reconcile, args=(tmp_path, start)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
        assert not t.is_alive()
    assert_failed_once(tmp_path, uuids)


def test_two_reconcilers_in_processes_fail_each_job_once(tmp_path: Path) -> None:
    uuids = overdue_jobs(tmp_path)
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(2)
    procs = [spawn.Process(target=reconcile, args=(tmp_path, start)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert_failed_once(tmp_path, uuids)
