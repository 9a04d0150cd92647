"""A run's status from its jobs' counts by state (pipelinejobs.domain.runs): the table
the README's Runs section states, one row per rule and its edges."""

from __future__ import annotations

import pytest

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
