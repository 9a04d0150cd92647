"""The job lifecycle: 11 states, 15 events, declared once as a data table.

The table below is the contract of DESIGN §3. It is loaded into one
``transitions.Machine`` with no model attached: the machine is the single,
shared, queryable description of what is allowed, and stored documents are not
turned into state-machine objects. Applying an event to a stored job (the atomic
compare-and-set and the history entry) is :mod:`pipelinejobs.domain.jobs`' business.

Self-loops (``run`` from RUNNING, ``finish`` from FINISHED, ...) are deliberate:
duplicate or concurrent reports of the same thing must not fail. Two fixes over the
original: ``update``/``resource`` are accepted after FINISHED (late backend
callbacks such as ARCHIVING_FINISHED arrive then), and ``finish`` is accepted from
CREATED (the ``run`` callback can be lost or arrive late).
"""

from __future__ import annotations

from enum import StrEnum

from transitions import Machine

from pipelinejobs.errors import TransitionRefused, ValidationError


class State(StrEnum):
    """Where a job is."""

    CREATED = "CREATED"
    RUNNING = "RUNNING"
    FAILED = "FAILED"
    FINISHED = "FINISHED"
    INDEXING = "INDEXING"
    VALIDATING = "VALIDATING"
    VALIDATED = "VALIDATED"
    REJECTED = "REJECTED"
    FINALIZED = "FINALIZED"
    RETIRED = "RETIRED"
    RESET = "RESET"


class Event(StrEnum):
    """What can happen to a job."""

    CREATE = "create"
    RUN = "run"
    UPDATE = "update"
    RESOURCE = "resource"
    FAIL = "fail"
    FINISH = "finish"
    INDEX = "index"
    INDEXED = "indexed"
    VALIDATE = "validate"
    VALIDATED = "validated"
    REJECT = "reject"
    FINALIZE = "finalize"
    RETIRE = "retire"
    RESET = "reset"
    READY = "ready"


S = State
ALL_STATES = tuple(State)
#: Marker for "the state does not change" (annotation events).
UNCHANGED = "="

#: (event, source states, destination). ``create`` has no source: it makes a new job.
TABLE: tuple[tuple[Event, tuple[State, ...], State | str], ...] = (
    (Event.CREATE, (), S.CREATED),
    (Event.RUN, (S.CREATED, S.RUNNING), S.RUNNING),
    (Event.UPDATE, tuple(s for s in ALL_STATES if s is not S.RETIRED), UNCHANGED),
    (Event.RESOURCE, tuple(s for s in ALL_STATES if s is not S.RETIRED), UNCHANGED),
    (Event.FAIL, (S.CREATED, S.RUNNING, S.VALIDATING, S.INDEXING), S.FAILED),
    (Event.FINISH, (S.CREATED, S.RUNNING, S.FINISHED), S.FINISHED),
    (Event.INDEX, (S.FINISHED, S.INDEXING), S.INDEXING),
    (Event.INDEXED, (S.FINISHED, S.INDEXING), S.FINISHED),
    (Event.VALIDATE, (S.FINISHED, S.VALIDATED), S.VALIDATING),
    (Event.VALIDATED, (S.VALIDATING, S.VALIDATED), S.VALIDATED),
    (Event.REJECT, (S.VALIDATING,), S.REJECTED),
    (Event.FINALIZE, (S.VALIDATED,), S.FINALIZED),
    (
        Event.RETIRE,
        (S.FAILED, S.FINALIZED, S.FINISHED, S.REJECTED, S.VALIDATING, S.VALIDATED),
        S.RETIRED,
    ),
    (Event.RESET, ALL_STATES, S.RESET),
    (Event.READY, (S.RESET,), S.CREATED),
)

#: Events only an admin token may send.
ADMIN_EVENTS = frozenset({Event.RESET, Event.READY})
#: Events the jobs-manager refuses: only a launcher (or the library) creates jobs.
RESERVED_EVENTS = frozenset({Event.CREATE})


def _build_machine() -> Machine:
    machine = Machine(
        model=None,
        states=[s.value for s in State],
        initial=None,
        auto_transitions=False,
        send_event=False,
    )
    for event, sources, dest in TABLE:
        if sources:  # ``create`` has none: it is not applied to an existing job
            machine.add_transition(
                event.value,
                source=[s.value for s in sources],
                dest=dest if dest == UNCHANGED else State(dest).value,
            )
    return machine


#: The one machine, shared by every job and every thread (it is only read).
MACHINE = _build_machine()


def parse_event(name: str) -> Event:
    """The :class:`Event` called ``name``, or a ValidationError listing the 15 names."""
    try:
        return Event(name)
    except ValueError:
        raise ValidationError(
            f"unknown event {name!r}; events are: {', '.join(e.value for e in Event)}",
            path="name",
            allowed=[e.value for e in Event],
        ) from None


def allowed_sources(event: str) -> tuple[State, ...]:
    """The states from which ``event`` may be applied (empty for ``create``)."""
    return tuple(State(t.source) for t in MACHINE.get_transitions(trigger=str(event)))


def next_state(state: str, event: str, *, uuid: str | None = None) -> State:
    """The state a job in ``state`` moves to on ``event``, or TransitionRefused.

    The refusal carries the current state, the event and the allowed sources, which
    is what a caller needs to understand why nothing happened.
    """
    event = parse_event(event)
    found = MACHINE.get_transitions(trigger=event.value, source=str(state))
    if not found:
        raise TransitionRefused(
            uuid=uuid,
            state=str(state),
            event=event.value,
            allowed=[s.value for s in allowed_sources(event)],
        )
    # Reflexive transitions ("=") are stored with dest = their source by transitions.
    return State(found[0].dest or state)


def refuse_reserved(uuid: str | None, event: str) -> TransitionRefused:
    """The refusal for a reserved event (``create``) sent as an ordinary event."""
    return TransitionRefused(
        uuid=uuid,
        state=None,
        event=str(event),
        allowed=[],
        reason=f"event '{event}' is reserved: jobs are created by the "
        f"launcher-proxy (a launch, or a create message as the client library's "
        f"ManagedPipelineJob sends), never by an event",
    )


def is_allowed(state: str, event: str) -> bool:
    """True when ``event`` may be applied to a job in ``state``."""
    return bool(MACHINE.get_transitions(trigger=str(event), source=str(state)))


def events_from(state: str) -> list[str]:
    """The events a job in ``state`` accepts (for error messages and the read API)."""
    return sorted(MACHINE.get_triggers(str(state)))
