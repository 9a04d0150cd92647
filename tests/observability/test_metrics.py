"""Each metric moves when what it counts happens: signals, the domain, the store's
compare-and-set, nonces, the indexer, and the runtime's Metrics middleware."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from pipelinejobs import signals
from pipelinejobs.access.keys import Principal
from pipelinejobs.access.nonces import Nonces
from pipelinejobs.adapters.store.cas import Change, compare_and_set
from pipelinejobs.adapters.store.memory import MemoryStore
from pipelinejobs.errors import (
    InvalidCredential,
    PermissionDenied,
    StoreUnavailable,
    TooManyConflicts,
    TransitionRefused,
)
from pipelinejobs.observability import metrics
from pipelinejobs.observability.metrics import PREFIX, Metrics
from pipelinejobs.runtime.dispatch import Runtime
from tests.actors.jobs_support import make_job, run, token, write_files
from tests.observability.samples import value
from tests.support import make_runtime
from tests.support import stub as bus

MANAGER = "jobs-manager"


def test_every_metric_is_prefixed_and_documented(recorded: Metrics) -> None:
    families = list(recorded.registry.collect())
    assert len(families) == 14
    for family in families:
        assert family.name.startswith(PREFIX), family.name
        assert len(family.documentation) > 20, family.name


def test_the_signals_are_counted(recorded: Metrics) -> None:
    signals.event_applied.send(event="run", state="RUNNING")
    signals.event_applied.send(event="run", state="RUNNING")
    signals.event_refused.send(event="finalize", reason="TransitionRefused")
    signals.event_duplicate.send(event="finish")
    signals.cas_conflict.send(collection="jobs")
    signals.cas_gave_up.send(collection="nonces")
    signals.nonce_redeemed.send(actor=MANAGER, outcome="redeemed")
    signals.files_indexed.send(seen=10, indexed=4)

    assert value(recorded, "pipelinejobs_events_applied_total", event="run") == 2
    assert (
        value(
            recorded,
            "pipelinejobs_events_refused_total",
            event="finalize",
            reason="TransitionRefused",
        )
        == 1
    )
    assert value(recorded, "pipelinejobs_events_duplicate_total", event="finish") == 1
    assert value(recorded, "pipelinejobs_cas_conflicts_total", collection="jobs") == 1
    assert value(recorded, "pipelinejobs_cas_gave_up_total", collection="nonces") == 1
    assert (
        value(recorded, "pipelinejobs_nonce_redemptions_total", actor=MANAGER, outcome="redeemed")
        == 1
    )
    assert value(recorded, "pipelinejobs_indexer_files_seen_total") == 10
    assert value(recorded, "pipelinejobs_indexer_files_indexed_total") == 4


def test_metrics_made_again_are_counted_into_from_the_next_signal_on(recorded: Metrics) -> None:
    signals.event_applied.send(event="run", state="RUNNING")
    metrics.reset()  # as a process switching to multi-process mode does
    again = metrics.current()
    signals.event_applied.send(event="run", state="RUNNING")
    assert value(recorded, "pipelinejobs_events_applied_total", event="run") == 1
    assert value(again, "pipelinejobs_events_applied_total", event="run") == 1


def test_a_runtime_listens_from_its_making_on(tmp_path: Path) -> None:
    for signal, receiver in metrics.RECEIVERS:
        signal.disconnect(receiver)
    make_runtime(tmp_path).close()
    assert all(receiver in signal.receivers for signal, receiver in metrics.RECEIVERS)


def test_a_broken_receiver_is_logged_and_what_it_observed_goes_on(
    runtime: Runtime, recorded: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**_: object) -> None:
        raise RuntimeError("observer bug")

    signals.event_applied.connect(broken)
    try:
        with caplog.at_level(logging.ERROR, "pipelinejobs.signals"):
            job = runtime.jobs.apply(make_job(runtime)["uuid"], "run").job
    finally:
        signals.event_applied.disconnect(broken)
    assert job["state"] == "RUNNING"
    assert "receiver" in caplog.text and "observer bug" in caplog.text
    assert value(recorded, "pipelinejobs_events_applied_total", event="run") == 1


def test_events_applied_refused_and_duplicate_by_event(runtime: Runtime, recorded: Metrics) -> None:
    job = make_job(runtime)
    assert value(recorded, "pipelinejobs_events_applied_total", event="create") == 1
    runtime.jobs.apply(job["uuid"], "run", delivery_id="delivery-1")
    runtime.jobs.apply(job["uuid"], "run", delivery_id="delivery-1")  # redelivered
    with pytest.raises(TransitionRefused):
        runtime.jobs.apply(job["uuid"], "validated")
    with pytest.raises(PermissionDenied):

        def wrong_token(doc: dict) -> None:
            raise PermissionDenied("wrong token")

        runtime.jobs.apply(job["uuid"], "finish", check=wrong_token)

    assert value(recorded, "pipelinejobs_events_applied_total", event="run") == 1
    assert value(recorded, "pipelinejobs_events_duplicate_total", event="run") == 1
    refused = "pipelinejobs_events_refused_total"
    assert value(recorded, refused, event="validated", reason="TransitionRefused") == 1
    assert value(recorded, refused, event="finish", reason="PermissionDenied") == 1
    assert value(recorded, "pipelinejobs_events_applied_total", event="finish") == 0


def test_a_job_submitted_again_is_a_duplicate_create(runtime: Runtime, recorded: Metrics) -> None:
    job = make_job(runtime)
    again = runtime.jobs.create(
        pipeline_uuid=job["pipeline_uuid"], linkage=job["child_of"], data=job["data"]
    )
    assert not again.created
    assert value(recorded, "pipelinejobs_events_applied_total", event="create") == 1
    assert value(recorded, "pipelinejobs_events_duplicate_total", event="create") == 1


def test_an_outage_is_not_a_refusal(
    runtime: Runtime, recorded: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = make_job(runtime)

    def down(*args: object, **kwargs: object) -> None:
        raise StoreUnavailable("the store is down")

    monkeypatch.setattr(runtime.store, "advance", down)
    with pytest.raises(StoreUnavailable):
        runtime.jobs.apply(job["uuid"], "run")
    assert list(recorded.events_refused.collect())[0].samples == []


def test_compare_and_set_conflicts_and_giving_up(recorded: Metrics) -> None:
    store = MemoryStore()
    store.insert("keys", {"id": "k1", "role": "user", "created": "2026-01-01T00:00:00.000Z"})
    raced: list[int] = []

    def lose_once(doc: dict) -> Change:
        if not raced:  # another writer gets in between this read and our write
            raced.append(1)
            store.update("keys", "k1", version=doc["version"], set={"description": "theirs"})
        return Change(set={"description": "ours"})

    assert compare_and_set(store, "keys", "k1", lose_once)["description"] == "ours"
    assert value(recorded, "pipelinejobs_cas_conflicts_total", collection="keys") == 1

    def always_lose(doc: dict) -> Change:
        store.update("keys", "k1", version=doc["version"], set={"n": doc["version"]})
        return Change(set={"description": "never"})

    with pytest.raises(TooManyConflicts):
        compare_and_set(store, "keys", "k1", always_lose, retries=2)
    assert value(recorded, "pipelinejobs_cas_conflicts_total", collection="keys") == 1 + 3
    assert value(recorded, "pipelinejobs_cas_gave_up_total", collection="keys") == 1


def test_nonce_redemptions_by_actor_and_outcome(recorded: Metrics) -> None:
    nonces = Nonces(MemoryStore())
    owner = Principal("key", "k" * 64, "user", "k" * 64)
    secret, _ = nonces.create(MANAGER, owner, level="EXECUTE", max_uses=5)
    nonces.redeem(secret, MANAGER, "EXECUTE")
    nonces.redeem(secret, MANAGER, "READ")
    with pytest.raises(PermissionDenied):
        nonces.redeem(secret, "jobs-indexer", "EXECUTE")
    with pytest.raises(InvalidCredential):
        nonces.redeem("PJ_" + "x" * 24, MANAGER, "EXECUTE")

    total = "pipelinejobs_nonce_redemptions_total"
    assert value(recorded, total, actor=MANAGER, outcome="redeemed") == 2
    assert value(recorded, total, actor="jobs-indexer", outcome="PermissionDenied") == 1
    assert value(recorded, total, actor=MANAGER, outcome="InvalidCredential") == 1


def test_the_indexer_counts_files_seen_and_indexed(tmp_path: Path, recorded: Metrics) -> None:
    rt = make_runtime(tmp_path, indexer={"batch_size": 2})
    try:
        job = make_job(rt, state="FINISHED")
        write_files(rt, {f"out/{i}.csv": b"x" for i in range(5)} | {"notes.txt": b"n"})
        message = {"uuid": job["uuid"], "name": "index", "filters": [r"\.csv$"]}
        execution = run(rt, "jobs-indexer", {**message, "token": token(rt, job)})
        assert execution["status"] == "COMPLETE", execution["error"]
    finally:
        rt.close()
    assert value(recorded, "pipelinejobs_indexer_files_seen_total") == 6
    assert value(recorded, "pipelinejobs_indexer_files_indexed_total") == 5


# -- the runtime's Metrics middleware ---------------------------------------------------------


def test_deliveries_by_actor_and_outcome_with_their_duration(
    runtime: Runtime, recorded: Metrics
) -> None:
    job = make_job(runtime)
    done = run(runtime, MANAGER, {"uuid": job["uuid"], "name": "run", "token": token(runtime, job)})
    assert done["status"] == "COMPLETE"
    refused = run(runtime, MANAGER, {"uuid": job["uuid"], "name": "validated"})  # no token
    assert refused["status"] == "ERROR"

    total, duration = "pipelinejobs_executions_total", "pipelinejobs_execution_duration_seconds"
    assert value(recorded, total, actor=MANAGER, outcome="complete") == 1
    assert value(recorded, total, actor=MANAGER, outcome="error") == 1
    assert value(recorded, duration + "_count", actor=MANAGER, outcome="complete") == 1
    assert 0 < value(recorded, duration + "_sum", actor=MANAGER, outcome="complete") < 10

    runtime.deliver(MANAGER, done["id"])  # a redelivery of a finished execution
    assert value(recorded, total, actor=MANAGER, outcome="skipped") == 1
    assert value(recorded, duration + "_count", actor=MANAGER, outcome="skipped") == 0


def test_a_retried_and_an_expired_delivery(
    tmp_path: Path, recorded: Metrics, monkeypatch: pytest.MonkeyPatch
) -> None:
    rt = make_runtime(tmp_path, bus={"max_retries": 1, "retry_backoff": 0.001})
    try:
        job = make_job(rt)

        def down(*args: object, **kwargs: object) -> None:
            raise StoreUnavailable("the store is down")

        monkeypatch.setattr(rt.jobs, "apply", down)
        run(rt, MANAGER, {"uuid": job["uuid"], "name": "run", "token": token(rt, job)})
        monkeypatch.undo()
        stuck = rt.submit(MANAGER, {"uuid": job["uuid"], "name": "run", "token": token(rt, job)})
        bus(rt).queue.clear()
        rt.executions.start(stuck["id"], "a-killed-worker")
        assert rt.expire(MANAGER, stuck["id"], 60)["status"] == "ERROR"
    finally:
        rt.close()

    total = "pipelinejobs_executions_total"
    assert value(recorded, total, actor=MANAGER, outcome="retry") == 1
    assert value(recorded, total, actor=MANAGER, outcome="error") == 1  # gave up
    assert value(recorded, total, actor=MANAGER, outcome="expired") == 1


def test_the_reconcilers_fails_are_counted_by_kind(recorded: Metrics) -> None:
    signals.job_overdue.send(kind="deadline")
    signals.job_overdue.send(kind="deadline")
    signals.job_overdue.send(kind="lost")
    name = "pipelinejobs_reconciler_fails_sent_total"
    assert value(recorded, name, kind="deadline") == 2
    assert value(recorded, name, kind="lost") == 1
