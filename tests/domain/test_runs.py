"""A run's status from its jobs' counts by state (pipelinejobs.domain.runs): the table
the README's Runs section states, one row per rule and its edges."""

from __future__ import annotations

import pytest

from pipelinejobs.adapters.store.memory import MemoryStore
from pipelinejobs.domain import runs
from pipelinejobs.domain.lifecycle import State


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({}, runs.QUEUED),
        ({"CREATED": 3}, runs.QUEUED),
        ({"CREATED": 0, "FINISHED": 0}, runs.QUEUED),
        ({"CREATED": 2, "RUNNING": 1}, runs.RUNNING),
        ({"CREATED": 1, "FINISHED": 1}, runs.RUNNING),
        ({"CREATED": 1, "FAILED": 1}, runs.RUNNING),
        ({"INDEXING": 1, "FINISHED": 4}, runs.RUNNING),
        ({"VALIDATING": 1}, runs.RUNNING),
        ({"RESET": 1, "FINISHED": 1}, runs.RUNNING),
        ({"RUNNING": 1, "RETIRED": 1}, runs.RUNNING),
        ({"FINISHED": 2}, runs.COMPLETED),
        ({"FINISHED": 1, "VALIDATED": 1, "FINALIZED": 1}, runs.COMPLETED),
        ({"FINISHED": 3, "FAILED": 2}, runs.PARTIALLY_COMPLETED),
        ({"FINALIZED": 1, "REJECTED": 1}, runs.PARTIALLY_COMPLETED),
        ({"FAILED": 2}, runs.FAILED),
        ({"FAILED": 1, "REJECTED": 1}, runs.FAILED),
        ({"RETIRED": 1}, runs.CANCELLED),
        ({"FINISHED": 3, "FAILED": 1, "RETIRED": 1}, runs.CANCELLED),
    ],
)
def test_status_from_counts(counts: dict[str, int], expected: str) -> None:
    assert runs.status(counts) == expected


def test_every_state_has_exactly_one_place() -> None:
    groups = (runs.WAITING, runs.ACTIVE, runs.SUCCEEDED, runs.UNSUCCESSFUL, runs.WITHDRAWN)
    placed = [state for group in groups for state in group]
    assert sorted(placed) == sorted(State) and len(placed) == len(set(placed))


# -- listing runs by status (runs.find) and a run's priority ------------------------------


def stored_runs(statuses: list[str]) -> tuple[MemoryStore, list[str]]:
    """A store with one run per status of ``statuses``, the first the oldest (each
    with one job in a state giving it that status, none for QUEUED); their uuids,
    newest first."""
    store = MemoryStore()
    state = {runs.QUEUED: None, runs.RUNNING: "RUNNING", runs.COMPLETED: "FINISHED",
             runs.FAILED: "FAILED", runs.CANCELLED: "RETIRED"}  # fmt: skip
    for i, status in enumerate(statuses):
        uuid = f"r{i:03d}"
        store.insert("runs", {"uuid": uuid, "created": f"2026-01-01T00:00:{i:02d}.000Z"})
        if state[status]:
            store.insert("jobs", {"uuid": f"j{i:03d}", "run": uuid, "state": state[status]})
    return store, [f"r{i:03d}" for i in reversed(range(len(statuses)))]


def follow(store: MemoryStore, *, limit: int, budget: int, statuses: tuple[str, ...]) -> list:
    pages: list[list[str]] = []
    after = None
    while True:
        page = runs.find(store, {}, limit=limit, after=after, statuses=statuses, budget=budget)
        assert page.scanned <= budget
        pages.append([run["uuid"] for run, _ in page.runs])
        after = page.next
        if after is None:
            return pages


@pytest.mark.parametrize(("limit", "budget"), [(1, 1), (1, 3), (2, 5), (3, 1000), (50, 250)])
def test_a_status_listing_followed_to_its_end_finds_every_match_once(
    limit: int, budget: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runs, "SCAN_PAGE", 4)  # store pages smaller than the budget
    cycle = [runs.QUEUED, runs.RUNNING, runs.RUNNING, runs.COMPLETED, runs.FAILED]
    store, newest_first = stored_runs(cycle * 12)
    wanted = (runs.COMPLETED, runs.QUEUED)
    expected = [u for u, s in zip(newest_first, reversed(cycle * 12), strict=True) if s in wanted]
    pages = follow(store, limit=limit, budget=budget, statuses=wanted)
    assert [uuid for page in pages for uuid in page] == expected
    assert all(len(page) <= limit for page in pages)
    if budget < 3:  # RUNNING, RUNNING uses up such a budget: a page comes back empty
        assert [] in pages


def test_a_listing_shows_each_runs_counts() -> None:
    store, newest_first = stored_runs([runs.QUEUED, runs.COMPLETED])
    page = runs.find(store, {}, limit=10)
    assert [(run["uuid"], runs.status(counts)) for run, counts in page.runs] == list(
        zip(newest_first, [runs.COMPLETED, runs.QUEUED], strict=True)
    )
    assert page.runs[0][1]["FINISHED"] == 1 and len(page.runs[0][1]) == len(State)


def test_a_jobs_priority_is_its_launchs_else_its_runs_else_medium() -> None:
    assert runs.job_priority("low", {"priority": "high"}) == "low"
    assert runs.job_priority(None, {"priority": "high"}) == "high"
    assert runs.job_priority(None, None) == runs.DEFAULT_PRIORITY
    store = MemoryStore()
    run = "126" + "0" * 5 + "-0000-5000-8000-000000000000"
    store.insert("runs", {"uuid": run, "priority": "high"})
    assert runs.run_priority(store, {"run": run}) == "high"
    assert runs.run_priority(store, {"run": f"uri:urn:{run}"}) == "high"
    assert runs.run_priority(store, {"run": "126" + run[3:].replace("0", "1", 1)}) is None
    assert runs.run_priority(store, {"run": 7}) is None and runs.run_priority(store, {}) is None
