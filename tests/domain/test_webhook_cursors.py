"""Webhook cursors (issue 16): one document per job holding every subscription's
position; positions only move forward, a retry is scheduled by one execution only,
and executions settling the same job at once (real threads, memory and SQLite) lose
nothing."""

from __future__ import annotations

import threading
from typing import Any

from pipelinejobs.domain.webhook_cursors import Cursors, Move, position

JOB = "1073f4ff-c2b9-5190-bd9a-e6a406d9796a"
OTHER = "1073f4ff-c2b9-5190-bd9a-e6a406d97000"


def retry(attempt: int) -> dict[str, Any]:
    return {"attempt": attempt, "since": "2026-11-30T00:00:00.000Z", "at": 1.0, "due": "x"}


def test_a_job_without_a_cursor_reads_as_empty(any_store: Any) -> None:
    read = Cursors(any_store).read([JOB, OTHER, JOB])
    assert list(read) == [JOB, OTHER]
    assert position(read[JOB], "wh-a") == (0, None)


def test_settle_merges_every_subscription_in_one_document(any_store: Any) -> None:
    cursors = Cursors(any_store)
    read = cursors.read([JOB])[JOB]
    cursors.settle(JOB, read, {"wh-a": Move(3), "wh-b": Move(5)})
    again = cursors.read([JOB])[JOB]
    assert position(again, "wh-a") == (3, None) and position(again, "wh-b") == (5, None)
    assert any_store.count("webhook_cursors") == 1


def test_a_position_never_moves_back(any_store: Any) -> None:
    cursors = Cursors(any_store)
    stale = cursors.read([JOB])[JOB]
    cursors.settle(JOB, stale, {"wh-a": Move(6)})
    # An execution that read before the first settled, and got less far.
    cursors.settle(JOB, stale, {"wh-a": Move(4), "wh-b": Move(2)})
    now = cursors.read([JOB])[JOB]
    assert position(now, "wh-a") == (6, None) and position(now, "wh-b") == (2, None)


def test_a_retry_is_scheduled_once_and_cleared_by_progress(any_store: Any) -> None:
    cursors = Cursors(any_store)
    read = cursors.read([JOB])[JOB]
    first = cursors.settle(JOB, read, {"wh-a": Move(2, retry(1))})
    assert first.scheduled == ["wh-a"]
    # A second execution that failed at the same place with the same attempt: the
    # retry is already scheduled, it sends nothing.
    assert cursors.settle(JOB, read, {"wh-a": Move(2, retry(1))}).scheduled == []
    assert position(cursors.read([JOB])[JOB], "wh-a") == (2, retry(1))
    # An execution that failed further back than another got: that one carries on.
    assert cursors.settle(JOB, read, {"wh-a": Move(1, retry(1))}).scheduled == []
    # Delivering past the failed event ends the chain.
    cursors.settle(JOB, cursors.read([JOB])[JOB], {"wh-a": Move(4)})
    assert position(cursors.read([JOB])[JOB], "wh-a") == (4, None)


def test_reset_puts_a_position_back(any_store: Any) -> None:
    cursors = Cursors(any_store)
    cursors.settle(JOB, cursors.read([JOB])[JOB], {"wh-a": Move(5), "wh-b": Move(5)})
    cursors.reset(JOB, "wh-a", 2)
    now = cursors.read([JOB])[JOB]
    assert position(now, "wh-a") == (2, None) and position(now, "wh-b") == (5, None)


def test_racing_settles_keep_every_subscriptions_furthest_position(any_store: Any) -> None:
    """Eight threads settle the same job at once, each from a stale read, each moving
    its own subscription and a shared one: every position ends at its maximum, and the
    shared retry is scheduled by exactly one of them."""
    threads = 8
    cursors = Cursors(any_store, retries=1000)
    stale = cursors.read([JOB])[JOB]
    scheduled: list[str] = []
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def settle(i: int) -> None:
        try:
            barrier.wait(10)
            moves = {f"wh-{i}": Move(i + 1), "wh-shared": Move(i + 1)}
            moves["wh-retry"] = Move(3, retry(1))
            scheduled.extend(cursors.settle(JOB, stale, moves).scheduled)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    workers = [threading.Thread(target=settle, args=(i,)) for i in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(30)
    assert not errors
    final = cursors.read([JOB])[JOB]
    assert [position(final, f"wh-{i}")[0] for i in range(threads)] == list(range(1, threads + 1))
    assert position(final, "wh-shared")[0] == threads
    assert scheduled == ["wh-retry"]
