"""A poisoned record cannot block the others (common/quarantine.py and its callers).

Records are damaged *directly in the SQLite store* — ``UPDATE ... SET doc = '{..., "x":
NaN}'`` or ``'not json'`` — as the attacker's NaN message once left one. Then what a
starting worker does (``Runtime.start_up``, what ``pipelinejobs worker`` calls before it
consumes) must start normally, recover the *other* orphaned executions, set the
poisoned one aside (quarantined, or its execution closed as ERROR) and say so once; a
second sweep says nothing more.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelinejobs.access.keys import Principal
from pipelinejobs.access.nonces import Nonces
from pipelinejobs.adapters.store import codec
from pipelinejobs.adapters.store.base import QUARANTINE
from pipelinejobs.adapters.store.sqlite import SQLiteStore
from pipelinejobs.errors import InvalidCredential, NotFound, Quarantined
from pipelinejobs.runtime.dispatch import Runtime
from tests.actors.jobs_support import make_job, token
from tests.support import FakeClock, make_runtime
from tests.support import stub as bus

MANAGER = "jobs-manager"
ALIASES = ["pipelines-manager", "jobs-manager", "jobs-indexer", "launcher-proxy"]
OWNER = Principal("key", "k" * 64, "user", "k" * 64, (MANAGER,))
#: What is written over a record: {key field} and {key} are filled in.
POISONS = {
    "nan": '{{"{field}": "{key}", "version": 0, "x": NaN}}',
    "not json": "not json",
}


@pytest.fixture(autouse=True)
def _fresh_reports() -> Iterator[None]:
    codec._reported.clear()  # "once per process": each test is a process of its own
    yield
    codec._reported.clear()


@pytest.fixture
def rt(tmp_path: Path, clock: FakeClock) -> Iterator[Runtime]:
    runtime = make_runtime(tmp_path, "sqlite", clock, bus={"recover_after": 60.0})
    yield runtime
    runtime.close()


def poison(rt: Runtime, collection: str, key: str, how: str) -> None:
    """Overwrite a stored record's text with raw SQL, behind the store's back."""
    assert isinstance(rt.store, SQLiteStore)
    field = rt.store.spec(collection).key
    text = POISONS[how].format(field=field, key=key)
    with sqlite3.connect(rt.store.path) as conn:
        changed = conn.execute(f'UPDATE "{collection}" SET doc = ? WHERE k = ?', (text, key))
        assert changed.rowcount == 1


def orphan(rt: Runtime, job: dict, n: int) -> str:
    """An update stored SUBMITTED whose message the broker lost."""
    message = {"uuid": job["uuid"], "name": "update", "token": token(rt, job), "data": {"n": n}}
    execution = rt.submit(MANAGER, message)
    bus(rt).queue.clear()
    return str(execution["id"])


def naming(caplog: pytest.LogCaptureFixture, key: str, level: int = logging.ERROR) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= level and r.name.startswith("pipelinejobs") and key in r.getMessage()
    ]


def updates(rt: Runtime, job: dict) -> list[int]:
    return [h["data"]["n"] for h in rt.jobs.record(job["uuid"])["history"] if h["name"] == "update"]


def second_sweep(rt: Runtime, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> list[str]:
    """A later sweep (as a running worker's timer makes it); what it logged."""
    caplog.clear()
    clock.advance(61)
    assert rt.recover(ALIASES, idle_only=True) == []
    bus(rt).join()
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# -- at worker start-up ---------------------------------------------------------------------


@pytest.mark.parametrize("how", POISONS)
def test_a_poisoned_execution_is_quarantined_and_the_others_recovered(rt, clock, caplog, how):
    job = make_job(rt)
    first, poisoned, last = (orphan(rt, job, n) for n in (1, 2, 3))
    clock.advance(61)
    poison(rt, "executions", poisoned, how)
    with caplog.at_level(logging.INFO):
        assert sorted(rt.start_up(ALIASES)) == sorted([first, last])
        bus(rt).join()
    assert [rt.executions.get(e)["status"] for e in (first, last)] == ["COMPLETE", "COMPLETE"]
    assert sorted(updates(rt, job)) == [1, 3]
    with pytest.raises(Quarantined, match="quarantined: its stored text is not strict JSON"):
        rt.executions.get(poisoned)
    entry = rt.store.get(QUARANTINE, f"executions/{poisoned}")
    assert entry["raw"] == POISONS[how].format(field="id", key=poisoned)
    assert len(naming(caplog, poisoned)) == 1
    assert len(naming(caplog, poisoned, logging.WARNING)) == 2  # + "moved to the quarantine"
    assert second_sweep(rt, clock, caplog) == []


@pytest.mark.parametrize("how", POISONS)
def test_a_poisoned_job_is_quarantined_by_the_event_that_meets_it(rt, clock, caplog, how):
    healthy, poisoned = make_job(rt, data={"n": 1}), make_job(rt, data={"n": 2})
    for_healthy, for_poisoned = orphan(rt, healthy, 1), orphan(rt, poisoned, 2)
    clock.advance(61)
    poison(rt, "jobs", poisoned["uuid"], how)
    with caplog.at_level(logging.INFO):
        rt.start_up(ALIASES)
        bus(rt).join()
    assert rt.executions.get(for_healthy)["status"] == "COMPLETE"
    assert updates(rt, healthy) == [1]
    failed = rt.executions.get(for_poisoned)
    assert failed["status"] == "ERROR"
    assert failed["error"]["error"] == "CorruptDocument"
    assert failed["error"]["key"] == poisoned["uuid"]
    assert "moved to the quarantine" in failed["logs"][-1]
    assert rt.store.get(QUARANTINE, f"jobs/{poisoned['uuid']}") is not None
    assert len(naming(caplog, poisoned["uuid"])) == 1
    assert second_sweep(rt, clock, caplog) == []
    # The next event for it is told why, not failed alike.
    again = rt.submit(MANAGER, {**rt.executions.get(for_poisoned)["message"], "data": {"n": 3}})
    bus(rt).join()
    refused = rt.executions.get(again["id"])
    assert "quarantined: its stored text is not strict JSON" in refused["error"]["message"]


@pytest.mark.parametrize("how", POISONS)
def test_a_poisoned_nonce_neither_stops_start_up_nor_blocks_the_others(rt, clock, caplog, how):
    nonces = Nonces(rt.store, clock=clock)
    secret, doc = nonces.create(MANAGER, OWNER, max_uses=5)
    other, _ = nonces.create(MANAGER, OWNER)
    job = make_job(rt)
    orphaned = orphan(rt, job, 1)
    clock.advance(61)
    poison(rt, "nonces", doc["id"], how)
    with caplog.at_level(logging.INFO):
        assert rt.start_up(ALIASES) == [orphaned]  # start-up reads no nonce
        bus(rt).join()
        assert updates(rt, job) == [1]
        assert [n["id"] for n in nonces.list(MANAGER)] == [nonces.redeem(other, MANAGER, "READ").id]
        # Redeeming it is the write that meets it: it is set aside there.
        with pytest.raises(InvalidCredential, match="moved to the quarantine"):
            nonces.redeem(secret, MANAGER, "EXECUTE")
        with pytest.raises(InvalidCredential, match="quarantined: its stored text"):
            nonces.redeem(secret, MANAGER, "EXECUTE")
    assert rt.store.get(QUARANTINE, f"nonces/{doc['id']}") is not None
    assert len(naming(caplog, doc["id"])) == 1
    assert second_sweep(rt, clock, caplog) == []


def test_a_readable_execution_that_cannot_be_claimed_is_closed_as_error(rt, clock, caplog):
    job = make_job(rt)
    good, bad = orphan(rt, job, 1), orphan(rt, job, 2)
    clock.advance(61)
    record = rt.executions.get(bad)
    # Decodable, but "recoveries" is not a number: claiming it fails on this record.
    with sqlite3.connect(rt.store.path) as conn:  # type: ignore[attr-defined]
        doc = json.dumps({**record, "recoveries": "many"})
        conn.execute("UPDATE executions SET doc = ? WHERE k = ?", (doc, bad))
    with caplog.at_level(logging.INFO):
        assert rt.start_up(ALIASES) == [good]
        bus(rt).join()
    closed = rt.executions.get(bad)
    assert closed["status"] == "ERROR"
    assert closed["error"]["message"].startswith(f"execution {bad} cannot be run: a field has")
    assert rt.executions.get(good)["status"] == "COMPLETE" and updates(rt, job) == [1]
    assert len(naming(caplog, bad)) == 1
    assert second_sweep(rt, clock, caplog) == []


# -- delivery -----------------------------------------------------------------------------


@pytest.mark.parametrize("how", POISONS)
def test_a_corrupt_execution_delivered_is_quarantined_not_run(rt, caplog, how):
    job = make_job(rt)
    execution = rt.submit(MANAGER, {"uuid": job["uuid"], "name": "update", "token": token(rt, job)})
    poison(rt, "executions", execution["id"], how)
    with caplog.at_level(logging.INFO):
        assert rt.deliver(MANAGER, execution["id"]) is None
        assert rt.deliver(MANAGER, execution["id"]) is None  # a redelivery: unknown now
    assert rt.store.get(QUARANTINE, f"executions/{execution['id']}") is not None
    assert len(naming(caplog, execution["id"])) == 2  # corrupt once; unknown on redelivery
    assert updates(rt, job) == []


@pytest.mark.parametrize(
    ("field", "value"),
    [("status", ["SUBMITTED"]), ("attempts", "x"), ("message", "not an object")],
    ids=["status", "attempts", "message"],
)
def test_an_ill_typed_execution_delivered_ends_as_error(rt, field, value):
    job = make_job(rt)
    execution = rt.submit(MANAGER, {"uuid": job["uuid"], "name": "update", "token": token(rt, job)})
    record = {**rt.executions.get(execution["id"]), field: value}
    with sqlite3.connect(rt.store.path) as conn:  # type: ignore[attr-defined]
        conn.execute(
            "UPDATE executions SET doc = ? WHERE k = ?", (json.dumps(record), execution["id"])
        )
    closed = rt.deliver(MANAGER, execution["id"])
    assert closed is not None and closed["status"] == "ERROR"
    assert "cannot be run" in closed["error"]["message"]
    assert rt.deliver(MANAGER, execution["id"])["status"] == "ERROR"  # not run again
    assert updates(rt, job) == []


# -- reaping lost launches ------------------------------------------------------------------


def test_a_poisoned_job_does_not_stop_reaping_the_others(rt, caplog):
    from pipelinejobs.adapters.launchers.supervisor import HOST

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    jobs = [make_job(rt, state="RUNNING", data={"n": n}) for n in (1, 2)]
    rt.config.log_dir.mkdir(parents=True, exist_ok=True)
    for job in jobs:
        record = {"state": "started", "host": HOST, "identity": "boot:gone"}
        marker = rt.config.log_dir / f"{job['uuid']}.execA.launch"
        marker.write_text(json.dumps({**record, "started": {"supervisor": gone.pid}}))
    (rt.config.log_dir / "damaged.execA.launch").write_text('["not", "a", "record"]')
    poison(rt, "jobs", jobs[0]["uuid"], "nan")
    with caplog.at_level(logging.INFO):
        assert rt.reap_lost_launches() == [jobs[1]["uuid"]]
        bus(rt).join()
    assert rt.jobs.get(jobs[1]["uuid"])["state"] == "FAILED"
    with pytest.raises(NotFound, match="quarantined"):
        rt.jobs.get(jobs[0]["uuid"])
    assert len(naming(caplog, jobs[0]["uuid"])) == 1


# -- the operator's view ----------------------------------------------------------------------


def test_the_quarantine_command_lists_what_was_set_aside(tmp_path, capsys):
    from pipelinejobs.cli import main

    store = SQLiteStore(tmp_path / "pipelinejobs.sqlite3")
    store.insert("jobs", {"uuid": "j1", "state": "CREATED"})
    store.insert("nonces", {"id": "n1"})
    store.quarantine("jobs", "j1", "its state is a list")
    store.quarantine("nonces", "n1", "it is corrupt")
    store.close()
    assert main(["quarantine", "--data-dir", str(tmp_path), "--raw"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == "2 record(s) in the quarantine"
    assert any(line.endswith("jobs j1  its state is a list") for line in lines)
    assert any('"state":"CREATED"' in line for line in lines)
    assert main(["quarantine", "--data-dir", str(tmp_path), "--collection", "nonces"]) == 0
    out = capsys.readouterr().out
    assert "nonces n1" in out and "jobs j1" not in out
