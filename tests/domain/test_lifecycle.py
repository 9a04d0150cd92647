"""Every (state, event) pair of DESIGN §3, allowed or refused.

The expected table is written out here independently of ``pipelinejobs.domain.lifecycle.TABLE``,
straight from the design document, so a wrong entry in the code cannot agree with
itself.
"""

from __future__ import annotations

import pytest

from pipelinejobs.domain import lifecycle
from pipelinejobs.domain.lifecycle import Event, State
from pipelinejobs.errors import TransitionRefused, ValidationError

STATES = [
    "CREATED", "RUNNING", "FAILED", "FINISHED", "INDEXING", "VALIDATING", "VALIDATED",
    "REJECTED", "FINALIZED", "RETIRED", "RESET",
]  # fmt: skip
EVENTS = [
    "create", "run", "update", "resource", "fail", "finish", "index", "indexed", "validate",
    "validated", "reject", "finalize", "retire", "reset", "ready",
]  # fmt: skip
NOT_RETIRED = [s for s in STATES if s != "RETIRED"]

#: event -> (sources, destination); None destination = unchanged.
DESIGN = {
    "create": ([], "CREATED"),
    "run": (["CREATED", "RUNNING"], "RUNNING"),
    "update": (NOT_RETIRED, None),
    "resource": (NOT_RETIRED, None),
    "fail": (["CREATED", "RUNNING", "VALIDATING", "INDEXING"], "FAILED"),
    "finish": (["CREATED", "RUNNING", "FINISHED"], "FINISHED"),
    "index": (["FINISHED", "INDEXING"], "INDEXING"),
    "indexed": (["FINISHED", "INDEXING"], "FINISHED"),
    "validate": (["FINISHED", "VALIDATED"], "VALIDATING"),
    "validated": (["VALIDATING", "VALIDATED"], "VALIDATED"),
    "reject": (["VALIDATING"], "REJECTED"),
    "finalize": (["VALIDATED"], "FINALIZED"),
    "retire": (
        ["FAILED", "FINALIZED", "FINISHED", "REJECTED", "VALIDATING", "VALIDATED"],
        "RETIRED",
    ),
    "reset": (STATES, "RESET"),
    "ready": (["RESET"], "CREATED"),
}

PAIRS = [(s, e) for s in STATES for e in EVENTS]


def test_the_enums_are_the_design_names():
    assert [s.value for s in State] == STATES
    assert [e.value for e in Event] == EVENTS


@pytest.mark.parametrize(("state", "event"), PAIRS, ids=[f"{s}-{e}" for s, e in PAIRS])
def test_every_state_event_pair(state: str, event: str) -> None:
    sources, dest = DESIGN[event]
    if state in sources:
        assert lifecycle.is_allowed(state, event)
        assert lifecycle.next_state(state, event) == (dest or state)
    else:
        assert not lifecycle.is_allowed(state, event)
        with pytest.raises(TransitionRefused) as info:
            lifecycle.next_state(state, event, uuid="1070000-job")
        refusal = info.value
        assert refusal.state == state
        assert refusal.event == event
        assert refusal.allowed == sorted(sources)
        assert state in refusal.message and event in refusal.message
        for source in sources:
            assert source in refusal.message


@pytest.mark.parametrize("event", EVENTS)
def test_allowed_sources_match_design(event: str) -> None:
    assert sorted(lifecycle.allowed_sources(event)) == sorted(DESIGN[event][0])


@pytest.mark.parametrize("state", STATES)
def test_events_from_each_state(state: str) -> None:
    expected = sorted(e for e, (sources, _) in DESIGN.items() if state in sources)
    assert lifecycle.events_from(state) == expected


def test_unknown_event_names_the_allowed_ones():
    with pytest.raises(ValidationError) as info:
        lifecycle.next_state("CREATED", "explode")
    assert info.value.detail["path"] == "name"
    assert "finish" in info.value.message and "explode" in info.value.message


def test_admin_and_reserved_events():
    assert lifecycle.ADMIN_EVENTS == {Event.RESET, Event.READY}
    assert lifecycle.RESERVED_EVENTS == {Event.CREATE}
    refusal = lifecycle.refuse_reserved("u", "create")
    assert "reserved" in refusal.message
