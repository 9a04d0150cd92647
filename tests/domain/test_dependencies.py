"""The dependency rules (issue 16), without a store: which parent states meet which
condition, which fail a dependent, and what a launch may declare."""

from __future__ import annotations

from typing import Any

import pytest

from pipelinejobs.domain import dependencies
from pipelinejobs.domain.dependencies import Dependency, decide, meets
from pipelinejobs.domain.lifecycle import State
from pipelinejobs.errors import ValidationError

A = "10700000-0000-5000-8000-00000000000a"
B = "10700000-0000-5000-8000-00000000000b"


def parent(state: str, *, indexed: bool = False, index: bool = True, **extra: Any) -> dict:
    job: dict[str, Any] = {"uuid": A, "state": state, **extra}
    if index:
        job["index"] = {"patterns": [], "level": "1"}
    if indexed:
        job[dependencies.INDEXED_ATTEMPT] = job.get("attempt", 1)
    return job


#: (parent state, indexed on this attempt) -> (finished, indexed, terminal) met.
MET = {
    ("CREATED", False): (False, False, False),
    ("RUNNING", False): (False, False, False),
    ("FINISHED", False): (True, False, False),
    ("INDEXING", False): (True, False, False),
    ("FINISHED", True): (True, True, True),
    ("VALIDATING", True): (True, True, False),
    ("VALIDATED", True): (True, True, False),
    ("FINALIZED", True): (True, True, True),
    ("FAILED", False): (False, False, True),
    ("REJECTED", False): (False, False, True),
    ("RETIRED", False): (False, False, True),
    ("RESET", False): (False, False, False),
}


@pytest.mark.parametrize(("state", "indexed"), list(MET))
@pytest.mark.parametrize("condition", dependencies.CONDITIONS)
def test_which_parent_states_meet_which_condition(state: str, indexed: bool, condition: str):
    expected = dict(zip(dependencies.CONDITIONS, MET[(state, indexed)], strict=True))
    assert meets(parent(state, indexed=indexed), condition) is expected[condition]


#: What a waiting dependent does when its parent is in a state (fail policy).
VERDICT = {
    "CREATED": "wait",
    "RUNNING": "wait",
    "FINISHED": None,  # depends on the condition
    "FAILED": "fail",
    "REJECTED": "fail",
    "RETIRED": "fail",
    "RESET": "wait",
}


@pytest.mark.parametrize("state", list(VERDICT))
@pytest.mark.parametrize("condition", dependencies.CONDITIONS)
def test_the_verdict_for_each_parent_state_and_condition(state: str, condition: str):
    verdict = decide(Dependency((A,), condition), {A: parent(state)})
    expected = VERDICT[state] or ("launch" if condition == "finished" else "wait")
    assert verdict.action == expected
    if expected == "fail":
        assert verdict.parent == A
        assert verdict.reason == f"parent job {A} is {state}: its dependents do not run"
    if expected == "wait":
        assert verdict.pending == [A]


@pytest.mark.parametrize("state", ["FAILED", "REJECTED", "RETIRED", "FINISHED"])
@pytest.mark.parametrize("condition", dependencies.CONDITIONS)
def test_ignore_waits_for_terminal_whatever_the_outcome(state: str, condition: str):
    rule = Dependency((A,), condition, "ignore")
    indexed = state == "FINISHED"
    assert decide(rule, {A: parent(state, indexed=indexed)}).action == "launch"
    assert decide(rule, {A: parent("RUNNING")}).action == "wait"


def test_every_parent_must_meet_it_and_the_first_failure_is_named():
    rule = Dependency((A, B), "finished")
    done = parent("FINISHED")
    assert decide(rule, {A: done, B: {**parent("RUNNING"), "uuid": B}}).pending == [B]
    assert decide(rule, {A: done, B: {**done, "uuid": B}}).action == "launch"
    failed = decide(rule, {A: done, B: {**parent("FAILED"), "uuid": B}})
    assert failed.action == "fail" and failed.parent == B
    gone = decide(rule, {A: done, B: None})
    assert gone.action == "fail" and gone.reason == f"parent job {B} no longer exists"


def test_an_index_of_an_earlier_attempt_does_not_count():
    retried = parent("FINISHED", attempt=2, **{dependencies.INDEXED_ATTEMPT: 1})
    assert not meets(retried, "indexed")
    assert meets({**retried, dependencies.INDEXED_ATTEMPT: 2}, "indexed")


def test_a_parent_without_automatic_indexing_meets_indexed_when_it_finishes():
    assert meets(parent("FINISHED", index=False), "indexed")
    assert not meets(parent("RUNNING", index=False), "indexed")


def test_a_failed_parent_with_retries_left_is_pending():
    policy = {"limit": 3, "on": ["salsa"]}
    will = parent("FAILED", launch={"retry": policy}, attempt=1,
                  last_entry={"name": "fail", "data": {"reason": "out of salsa"}})  # fmt: skip
    assert decide(Dependency((A,)), {A: will}).action == "wait"
    other = {**will, "last_entry": {"name": "fail", "data": {"reason": "disk full"}}}
    assert decide(Dependency((A,)), {A: other}).action == "fail"
    last = {**will, "attempt": 3}
    assert decide(Dependency((A,)), {A: last}).action == "fail"


@pytest.mark.parametrize(
    ("previous", "event", "state", "releasing"),
    [
        ("RUNNING", "finish", "FINISHED", True),
        ("FINISHED", "finish", "FINISHED", False),  # a repeated report
        ("INDEXING", "indexed", "FINISHED", True),
        ("FINISHED", "indexed", "FINISHED", True),
        ("RUNNING", "fail", "FAILED", True),
        ("FINISHED", "retire", "RETIRED", True),
        ("CREATED", "run", "RUNNING", False),
        ("FAILED", "reset", "RESET", False),
        ("RUNNING", "update", "RUNNING", False),
    ],
)
def test_which_events_may_release_dependents(previous, event, state, releasing):
    assert dependencies.is_releasing(previous, event, state) is releasing


def test_a_launch_declares_parents_once_in_order_with_defaults():
    declared = dependencies.from_launch({"depends_on": [f"uri:urn:{B}", A, B]})
    assert declared == Dependency((B, A), "indexed", "fail")
    assert declared.fields() == {
        "depends_on": [B, A],
        "dependency": {"condition": "indexed", "on_parent_failure": "fail"},
    }
    assert dependencies.from_launch({}) is None


@pytest.mark.parametrize("field", ["condition", "on_parent_failure"])
def test_a_rule_without_parents_is_refused_naming_it(field: str):
    with pytest.raises(ValidationError) as refused:
        dependencies.from_launch({field: "finished"})
    assert refused.value.detail["path"] == field


def test_edges_carry_the_condition_that_applies():
    job = {"uuid": B, **Dependency((A,), "finished", "ignore").fields()}
    assert dependencies.edges(job) == [{"from": A, "to": B, "condition": "terminal"}]
    assert dependencies.edges({"uuid": A}) == []


def test_indexed_records_its_attempt():
    assert dependencies.milestones("indexed", {"attempt": 2}) == {"indexed_attempt": 2}
    assert dependencies.milestones("finish", {}) == {}
    assert State.FINISHED in dependencies.RELEASING
