"""Dependencies between jobs: when a job that waits for others may start (issue 16).

A launch may name ``depends_on`` (parent job uuids), a ``condition`` each parent must
meet, and what a parent's failure does (``on_parent_failure``). The job is created in
CREATED and launched once every parent meets the condition; this module holds the
rules only — which parent states meet which condition, which fail the dependent —
so they can be tested without a store or a bus (:mod:`pipelinejobs.runtime.releases`
applies them).

Conditions, in the order a parent reaches them:

* ``finished`` — its compute finished: FINISHED or any state only a finished job
  reaches (INDEXING, VALIDATING, VALIDATED, FINALIZED);
* ``indexed`` (the default) — its outputs are indexed: the ``indexed`` event was
  applied on its current attempt (:data:`INDEXED_ATTEMPT`), or it reached VALIDATING,
  VALIDATED or FINALIZED, which come after indexing. The default because a dependent
  almost always reads its parents' outputs as catalog files, which exist only then
  (the issue's "run B when A's outputs are indexed"). A parent that does not index
  automatically (``index: false``) meets it when it finishes: it will never be
  indexed by itself, and waiting for it forever helps nobody;
* ``terminal`` — it will not change by itself again: FINISHED (indexed when it
  indexes), FAILED, REJECTED, FINALIZED or RETIRED.

A parent that is FAILED, REJECTED or RETIRED fails the waiting dependent
(``on_parent_failure: fail``, the default) with a reason naming it, whatever the
condition: with ``terminal`` the dependent waits for an outcome and runs only after a
good one. With ``ignore`` it waits for ``terminal`` instead, whatever the outcome. A
FAILED parent whose retry policy will retry it automatically is not a failure yet: it
is pending, and the dependent waits for its next attempt.

A RESET parent (being retried by hand) is pending: it will be launched again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pipelinejobs.domain import retry
from pipelinejobs.domain.lifecycle import Event, State
from pipelinejobs.errors import ValidationError

CONDITIONS = ("finished", "indexed", "terminal")
DEFAULT_CONDITION = "indexed"
ON_PARENT_FAILURE = ("fail", "ignore")
DEFAULT_ON_PARENT_FAILURE = "fail"
#: The most parents one job may name (each is read on every release of it).
MAX_PARENTS = 100

#: The job field the ``indexed`` event sets to the attempt it indexed: what tells an
#: indexed FINISHED job from one that finished and is not indexed yet, on this
#: attempt (``last_event`` is overwritten by any late ``update``).
INDEXED_ATTEMPT = "indexed_attempt"

#: States only a job whose compute finished reaches.
AFTER_FINISH = frozenset(
    s.value
    for s in (State.FINISHED, State.INDEXING, State.VALIDATING, State.VALIDATED, State.FINALIZED)
)
#: States after indexing (validation follows it in the seed's flow).
AFTER_INDEXED = frozenset(s.value for s in (State.VALIDATING, State.VALIDATED, State.FINALIZED))
#: States that fail a dependent (unless ``ignore``).
FAILED = frozenset(s.value for s in (State.FAILED, State.REJECTED))
#: States a job does not leave by itself.
TERMINAL = frozenset(
    s.value for s in (State.FINISHED, State.FAILED, State.REJECTED, State.FINALIZED, State.RETIRED)
)
#: States a job entering them may release or fail its dependents: the ones the
#: conditions above test. (RUNNING, CREATED and RESET release nobody.)
RELEASING = AFTER_FINISH | FAILED | TERMINAL


@dataclass(frozen=True)
class Dependency:
    """What a dependent waits for: its parents and the rule applied to them."""

    parents: tuple[str, ...]
    condition: str = DEFAULT_CONDITION
    on_parent_failure: str = DEFAULT_ON_PARENT_FAILURE

    def fields(self) -> dict[str, Any]:
        """The job fields that store it: ``depends_on`` (indexed: a parent's
        dependents are one lookup) and ``dependency`` (the rule)."""
        return {
            "depends_on": list(self.parents),
            "dependency": {
                "condition": self.condition,
                "on_parent_failure": self.on_parent_failure,
            },
        }


def from_launch(body: Mapping[str, Any]) -> Dependency | None:
    """The dependency a launch message declares (None: it names no parents), its
    uuids without the ``uri:urn:`` prefix and without repeats, in the given order."""
    given = body.get("depends_on") or []
    if not given:
        if body.get("condition") or body.get("on_parent_failure"):
            name = "condition" if body.get("condition") else "on_parent_failure"
            raise ValidationError(
                f"{name} is given but depends_on names no parent job: it would apply to nothing",
                path=name,
            )
        return None
    parents = tuple(dict.fromkeys(str(p).removeprefix("uri:urn:") for p in given))
    if len(parents) > MAX_PARENTS:
        raise ValidationError(
            f"depends_on names {len(parents)} jobs; at most {MAX_PARENTS}", path="depends_on"
        )
    return Dependency(
        parents,
        str(body.get("condition") or DEFAULT_CONDITION),
        str(body.get("on_parent_failure") or DEFAULT_ON_PARENT_FAILURE),
    )


def of_job(job: Mapping[str, Any]) -> Dependency | None:
    """The dependency stored on ``job`` (None: it waits for nobody)."""
    parents = job.get("depends_on") or []
    if not parents:
        return None
    rule = job.get("dependency") or {}
    return Dependency(
        tuple(parents),
        str(rule.get("condition") or DEFAULT_CONDITION),
        str(rule.get("on_parent_failure") or DEFAULT_ON_PARENT_FAILURE),
    )


def indexed(job: Mapping[str, Any]) -> bool:
    """Whether ``job``'s outputs are indexed on its current attempt (or it will never
    index them by itself: see the module docstring)."""
    state = job.get("state")
    if state in AFTER_INDEXED:
        return True
    if state != State.FINISHED:
        return False
    if not job.get("index"):
        return True
    return job.get(INDEXED_ATTEMPT) == retry.attempt_of(job)


def meets(job: Mapping[str, Any], condition: str) -> bool:
    """Whether parent ``job`` meets ``condition`` (one of :data:`CONDITIONS`)."""
    state = job.get("state")
    if condition == "finished":
        return state in AFTER_FINISH
    if condition == "indexed":
        return indexed(job)
    if condition == "terminal":
        return state in TERMINAL - {State.FINISHED.value} or (
            state == State.FINISHED and indexed(job)
        )
    raise ValueError(f"unknown condition {condition!r}")


def will_retry(job: Mapping[str, Any]) -> bool:
    """Whether a FAILED ``job``'s retry policy still allows it another attempt for the
    failure it recorded (its last record, when that is the ``fail``; otherwise the
    policy's limit alone decides: waiting is safer than failing a dependent early)."""
    last = job.get("last_entry") or {}
    data = last.get("data") if last.get("name") == Event.FAIL else None
    if data is None:
        policy = (job.get("launch") or {}).get("retry")
        return isinstance(policy, Mapping) and retry.attempt_of(job) < int(policy.get("limit", 1))
    return retry.should_retry(job, data)


@dataclass(frozen=True)
class Verdict:
    """What to do with a waiting dependent: ``launch``, ``fail`` (``reason`` names the
    parent) or ``wait`` (``pending``: the parents it still waits for)."""

    action: str
    reason: str = ""
    parent: str | None = None
    pending: list[str] = field(default_factory=list)


def decide(dependency: Dependency, parents: Mapping[str, Mapping[str, Any] | None]) -> Verdict:
    """The verdict for a dependent whose parents are now ``parents`` (uuid → job, None
    for one that no longer exists: a failure, it can never meet the condition)."""
    condition = dependency.condition
    ignore = dependency.on_parent_failure == "ignore"
    if ignore:
        condition = "terminal"
    pending: list[str] = []
    for uuid in dependency.parents:
        job = parents.get(uuid)
        if job is None:
            return Verdict("fail", f"parent job {uuid} no longer exists", uuid)
        state = str(job.get("state"))
        if state == State.FAILED and will_retry(job):
            pending.append(uuid)  # its next attempt decides
            continue
        if not ignore and (state in FAILED or state == State.RETIRED):
            # Before the condition: ``terminal`` with ``fail`` waits for an outcome
            # and runs only after a good one.
            return Verdict("fail", f"parent job {uuid} is {state}: its dependents do not run", uuid)
        if not meets(job, condition):
            pending.append(uuid)
    if pending:
        return Verdict("wait", pending=pending)
    return Verdict("launch")


def is_releasing(previous: str, event: str, state: str) -> bool:
    """Whether an event that moved a job ``previous`` -> ``state`` may release or fail
    its dependents: entering a state the conditions test, or ``indexed`` (which
    leaves a job in FINISHED)."""
    if state not in RELEASING:
        return False
    return previous != state or event == Event.INDEXED


def milestones(event: str, job: Mapping[str, Any]) -> dict[str, Any]:
    """Fields an event sets on the job besides its state, for the conditions above:
    ``indexed`` records the attempt it indexed (:data:`INDEXED_ATTEMPT`)."""
    if event == Event.INDEXED:
        return {INDEXED_ATTEMPT: retry.attempt_of(job)}
    return {}


def edges(job: Mapping[str, Any]) -> list[dict[str, str]]:
    """The graph edges into ``job``: one per parent, with the condition that applies."""
    dependency = of_job(job)
    if dependency is None:
        return []
    condition = "terminal" if dependency.on_parent_failure == "ignore" else dependency.condition
    return [
        {"from": parent, "to": str(job["uuid"]), "condition": condition}
        for parent in dependency.parents
    ]
