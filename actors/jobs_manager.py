"""PipelineJobs Manager: applies lifecycle events to jobs.

From the seed: "PipelineJobs Manager can update a job's state via three mechanisms:

- Receipt of a JSON-formatted ``pipelinejob_manager_event``
- Receipt of URL parameters sufficient to form a ``pipelinejob_manager_event``
- Receipt of an ``agave_job_callback`` POST combined with ``uuid``, ``status`` and
  ``token`` URL parameters."

It accepts any event save for ``create``, which is reserved for other agents. Every
event needs the job's update token or an admin token; ``reset`` and ``ready`` need
an admin token. When a ``finish`` brings a job to FINISHED, the manager asks the
indexer to index it — the seed's "normally run automatically via PipelineJobs Manager
when a job enters the FINISHED state": every job a launch creates asks for it (every
file at level "1" unless refined) unless its launch said ``index: false``. The body of
a status callback (``status``, no explicit event) must be an ``agave_job_callback``. When a person
(not the job's own backend) fails or resets a job whose compute PipelineJobs runs,
that compute is stopped — cancel is ``fail`` with a ``reason``.

A ``bulk`` message (issue 15) cancels, retries, retires or tags every job a filter
selects, one message per job (:mod:`pipelinejobs.domain.bulk`).

An event sent with an ``event_key`` (what the client library's ManagedPipelineJob
sends) is named by it: its history uuid is derived from the job and the key, not from
the execution, so the same key in another execution is a duplicate, and so is what it
sets off (a finish's index request is derived from the finish's uuid).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pipelinejobs.adapters.launchers import stop_compute
from pipelinejobs.domain import deadlines, lifecycle, retry, tags, validation
from pipelinejobs.domain.clock import now
from pipelinejobs.domain.lifecycle import Event, State
from pipelinejobs.errors import (
    LauncherError,
    NoLongerOverdue,
    SchemaValidationError,
    TransitionRefused,
    ValidationError,
)
from pipelinejobs.runtime import bulk, releases
from pipelinejobs.runtime.actor import Actor, Context, Message, Params

#: Agave job statuses and the events they stand for. Any other known Agave status is
#: progress (``resource``); an unknown one is recorded as an ``update``.
STATUS_EVENTS: dict[str, str] = {
    "RUNNING": Event.RUN,
    "FINISHED": Event.FINISH,
    "FAILED": Event.FAIL,
    "STOPPED": Event.FAIL,
    "KILLED": Event.FAIL,
    "ARCHIVING_FAILED": Event.FAIL,
    "HEARTBEAT": Event.UPDATE,
}
AGAVE_PROGRESS = frozenset({
    "CREATED", "PENDING", "PROCESSING_INPUTS", "STAGING_INPUTS", "STAGED", "STAGING_JOB",
    "SUBMITTING", "QUEUED", "BLOCKED", "PAUSED", "CLEANING_UP", "ARCHIVING",
    "ARCHIVING_FINISHED", "STAGING", "ACCEPTED",
})  # fmt: skip

STATUS_FORM = re.compile(r"[A-Z_]{1,64}", re.ASCII)

#: Events after which a job's own compute, if still running, is stopped.
STOPPING_EVENTS = frozenset({Event.FAIL, Event.RESET})

#: States a job reaches only after it ran: a RUNNING callback arriving there is late.
LATE_FOR_RUN = frozenset(
    s.value
    for s in (
        State.FAILED,
        State.FINISHED,
        State.INDEXING,
        State.VALIDATING,
        State.VALIDATED,
        State.REJECTED,
        State.FINALIZED,
    )
)

#: States a job reaches only after it finished: a FINISHED callback arriving there is
#: a repeat (Agave's retries, a supervisor's re-post) arriving after its indexing began.
LATE_FOR_FINISH = frozenset(
    s.value
    for s in (State.INDEXING, State.VALIDATING, State.VALIDATED, State.REJECTED, State.FINALIZED)
)
#: Callback events a refusal from these states answers with "ignored", and why.
LATE: dict[str, tuple[frozenset[str], str]] = {
    Event.RUN: (LATE_FOR_RUN, "late RUNNING callback"),
    Event.FINISH: (LATE_FOR_FINISH, "repeated FINISHED callback"),
}


def event_for_status(status: str) -> str:
    """The lifecycle event an Agave job status maps to.

    A status is an ASCII word (Agave's are ``[A-Z_]``): an unknown one is kept as an
    ``update``, but one that is not even a word — ``FINISHЕD`` with a Cyrillic Е — is
    refused, so a backend that mistyped its final status hears so instead of having
    it recorded as a remark."""
    status = status.strip().upper()
    if not STATUS_FORM.fullmatch(status):
        raise ValidationError(
            f"status {status[:64]!r} is not an Agave job status (ASCII letters and _); "
            f"known: {', '.join(sorted([*STATUS_EVENTS, *AGAVE_PROGRESS]))}",
            path="status",
        )
    if status in STATUS_EVENTS:
        return STATUS_EVENTS[status]
    return Event.RESOURCE if status in AGAVE_PROGRESS else Event.UPDATE


def check_callback_body(body: dict[str, Any]) -> None:
    """Refuse a status callback whose body is not an Agave job notification (the
    ``agave_job_callback`` schema), naming the field: such a body is recorded as the
    event's data, so a backend posting something else hears so instead of filling the
    history with it. ``status`` is already taken from the URL when the body has none.
    Data of another shape goes with an explicit event (``?event=update``)."""
    try:
        validation.validate("agave_job_callback", body)
    except SchemaValidationError as exc:
        required = validation.schema_documents()["agave_job_callback"]["required"]
        missing = [name for name in required if name not in body]
        path = exc.path or (missing[0] if missing else "")
        raise SchemaValidationError(
            f"the body of a status callback must be an Agave job notification: "
            f"{exc.message} (to attach other data, send the event by name: "
            f"?event=<name> or ?name=<name>)",
            schema=exc.schema,
            path=path,
            errors=exc.detail.get("errors"),
        ) from exc


class JobsManager(Actor):
    alias = "jobs-manager"
    description = "Applies lifecycle events to PipelineJobs"
    accepts = (
        "pipelinejob_manager_event",
        "agave_job_callback",
        "pipelinejob_tag",
        "pipelinejob_bulk",
    )

    def quick(self, message: Mapping[str, Any]) -> bool:
        """Events, callbacks and tags are a few reads and one compare-and-set; a bulk
        action coordinates thousands of jobs and writes its progress."""
        return message.get("action") != "bulk"

    def parse(self, message: Any, params: Params) -> Message:
        body = self.body_of(message)
        if body.get("action") == "tag":
            return parse_tag(self, body, params)
        if body.get("action") == "bulk":
            return Message("bulk", self.validated("pipelinejob_bulk", body))
        if params.get("uuid") and (
            params.get("status") or params.get("event") or params.get("name")
        ):
            return self._from_params(body, params)
        if "status" in body and params.get("uuid"):
            return self._from_params(body, {**params, "status": str(body["status"])})
        event = dict(body)
        if "token" not in event and params.get("token"):
            event["token"] = params["token"]
        self.validated("pipelinejob_manager_event", event)
        return Message("event", event, event.get("token"), event.get("data"))

    def _from_params(self, body: dict[str, Any], params: Params) -> Message:
        """URL-parameter events and Agave callbacks: the POST body becomes the data."""
        explicit = params.get("event") or params.get("name")
        status = params.get("status")
        if explicit:
            name, kind = str(explicit), "params"
        else:
            name, kind = event_for_status(str(status)), "callback"
        event: dict[str, Any] = {"uuid": params["uuid"], "name": name}
        if params.get("token"):
            event["token"] = params["token"]
        if body:
            event["data"] = dict(body)
        if status and "status" not in body:
            event.setdefault("data", {})["status"] = str(status)
        if kind == "callback" and body:
            check_callback_body(event["data"])
        self.validated("pipelinejob_manager_event", event)
        return Message(kind, event, event.get("token"), event.get("data"))

    def admit(self, runtime: Any, msg: Message, role: str, owner: str | None = None) -> None:
        """A bulk action's filter, owner rule, limit and confirmed count are checked
        before it is queued (:func:`pipelinejobs.runtime.bulk.admit`)."""
        if msg.kind == "bulk":
            bulk.admit(runtime, msg.body, role, owner)

    def handle(self, ctx: Context, msg: Message) -> dict[str, Any]:
        if msg.kind == "tag":
            return apply_tag(ctx, msg)
        if msg.kind == "bulk":
            return bulk.run(ctx, msg.body)
        uuid, name = msg.body["uuid"], msg.body["name"]
        if name in lifecycle.RESERVED_EVENTS:
            raise lifecycle.refuse_reserved(uuid, name)
        ctx.log.debug(f"Event selected: {name} ({msg.kind})")
        admin_only = name in lifecycle.ADMIN_EVENTS
        tokens = ctx.runtime.tokens

        overdue = deadlines.overdue_of(msg.data) if name == Event.FAIL else None

        def authorize(job: dict[str, Any]) -> None:
            tokens.authorize(
                uuid,
                int(job.get("token_rotation", 0)),
                msg.token,
                admin_only=admin_only,
                action=f"send '{name}' to",
            )

        def check(job: dict[str, Any]) -> None:
            authorize(job)
            if overdue is not None:  # a reconciler's fail: decided on the job it writes over
                at, kind = overdue.get("at"), str(overdue.get("kind"))
                if not deadlines.still_overdue(job, kind, at, now(ctx.runtime.clock)):
                    raise NoLongerOverdue(
                        f"job {uuid} is no longer past its {kind} time {at} "
                        f"(it is {job['state']}); not failed",
                        uuid=uuid,
                        state=job["state"],
                    )

        # An event_key names the event whoever sends it: its history uuid comes from
        # the key, and only a sender holding the token may learn it was applied.
        key = msg.body.get("event_key")
        if key:
            authorize(ctx.runtime.jobs.get(uuid))
        try:
            result = ctx.runtime.jobs.apply(
                uuid,
                name,
                msg.data,
                delivery_id=f"key:{key}" if key else ctx.execution_id,
                sender=ctx.sender,
                check=check,
            )
        except NoLongerOverdue as saved:
            ctx.log.info(saved.message)
            return {"uuid": uuid, "event": name, "applied": False, "ignored": saved.message}
        except TransitionRefused as refused:
            late = LATE.get(name)
            if msg.kind == "callback" and late and refused.state in late[0]:
                # A backend's RUNNING report that arrives after its FINISHED/FAILED one, or
                # a repeated FINISHED arriving while the job is indexed (automatic since
                # issue 13) or later, is superseded, not an error: the job went past it.
                ctx.log.warning(
                    f"Job {uuid}: {late[1]} ignored; the job is already {refused.state}"
                )
                return {
                    "uuid": uuid,
                    "event": name,
                    "state": refused.state,
                    "applied": False,
                    "ignored": late[1],
                }
            raise
        job = result.job
        if result.applied:
            ctx.log.info(f"Job {uuid}: {name} moved {result.previous_state} -> {job['state']}")
        else:
            ctx.log.info(
                f"Job {uuid}: {name} was already applied by this delivery; not applied again"
            )
        follow = result.entry["uuid"] if key else None
        index = self._maybe_index(ctx, result.previous_state, name, job, follow=follow)
        reply = {
            "uuid": uuid,
            "event": name,
            "state": job["state"],
            "applied": result.applied,
            "duplicate": result.duplicate,
            "indexing": index,
        }
        released = releases.follow(ctx, result, name)  # its dependents (issue 16)
        if released:
            reply["releases"] = released
        if name in STOPPING_EVENTS and msg.kind != "callback":
            reply["stopping"] = self._stop_compute(ctx, name, job, msg)
        if name == Event.FAIL and result.previous_state != State.FAILED:
            retrying = self._maybe_retry(ctx, job, msg)
            if retrying:
                reply["retrying"] = retrying
        return reply

    @staticmethod
    def _maybe_retry(ctx: Context, job: dict[str, Any], msg: Message) -> str | None:
        """A failure its launch's retry policy covers: send the launcher-proxy a retry
        of this attempt, delivered after the policy's back-off (a delayed publish; the
        execution is stored SUBMITTED with ``retry_at``, so a worker restarting during
        the wait loses nothing: recovery publishes it once due). Keyed on (job,
        attempt): a redelivered ``fail`` finds the retry already sent."""
        if not retry.should_retry(job, msg.data):
            return None
        attempt = retry.attempt_of(job)
        wait = retry.delay(job["launch"]["retry"], attempt)
        reason = str((msg.data or {}).get("reason") or (msg.data or {}).get("status") or "failed")
        request = {
            "action": "retry",
            "uuid": job["uuid"],
            "token": ctx.runtime.tokens.update_token(
                job["uuid"], int(job.get("token_rotation", 0))
            ),
            "reason": f"automatic retry of attempt {attempt} ({reason[:900]})",
            "attempt": attempt,
        }
        ctx.log.info(f"Job {job['uuid']}: attempt {attempt} failed; retrying in {wait:.1f}s")
        return ctx.send("launcher-proxy", request, key=f"retry:{job['uuid']}:{attempt}", delay=wait)

    @staticmethod
    def _stop_compute(ctx: Context, name: str, job: dict[str, Any], msg: Message) -> list[str]:
        """A job failed or reset by a person (not by its own backend's report) should not
        go on computing: stop its compute, where PipelineJobs runs it. A local or docker
        job's supervisor kills it and records the end as an ``update`` (STOPPED); a
        Slurm batch job is cancelled here (scancel), and its end recorded here too."""
        backend = (job.get("launch") or {}).get("backend")
        reason = str((msg.data or {}).get("reason") or f"the job was sent '{name}'")
        try:
            asked = stop_compute(ctx.runtime.config, job, reason)
        except LauncherError as exc:  # Slurm unreachable: the event stands, said loudly
            ctx.log.error(f"Job {job['uuid']}: its {backend} compute could not be stopped: "
                          f"{exc.message}")  # fmt: skip
            return []
        if not asked:
            return asked
        ctx.log.info(f"Job {job['uuid']}: asked the {backend} compute to stop ({reason})")
        cancelled = [a.split(":", 1)[1] for a in asked if a.startswith("slurm:")]
        if cancelled:
            ctx.runtime.jobs.apply(
                job["uuid"],
                Event.UPDATE,
                {
                    "status": "STOPPED",
                    "executionSystem": "slurm",
                    "slurmJobId": cancelled[-1],
                    "error": f"the compute was stopped on request: {reason} (scancel)",
                },
                delivery_id=f"{ctx.execution_id}:stopped",
                sender=ctx.sender,
            )
        return asked

    @staticmethod
    def _maybe_index(
        ctx: Context, previous: str, name: str, job: dict[str, Any], *, follow: str | None = None
    ) -> str | None:
        """Send ``index`` to the indexer when a finish completed a job that asks for it.

        Only a ``finish`` that changed the state (not a repeated report from FINISHED,
        nor ``indexed``, which also lands in FINISHED) triggers it. On a redelivery
        ``previous`` is the state the first delivery saw (see ``EventResult``), so a
        redelivered repeat does not index either, and a redelivered first finish
        repeats the send: its execution id is derived from this one, so an index
        request that was already sent is found, not sent twice. ``follow``: the uuid
        of a finish sent with an ``event_key``, which the send's id is derived from
        instead, so the same finish sent again in another execution finds it too.
        """
        config = job.get("index")
        if name != Event.FINISH or not config or job["state"] != State.FINISHED:
            return None
        if previous == State.FINISHED:
            return None
        request: dict[str, Any] = {
            "uuid": job["uuid"],
            "name": "index",
            "token": ctx.runtime.tokens.update_token(
                job["uuid"], int(job.get("token_rotation", 0))
            ),
        }
        if config.get("patterns"):
            request["filters"] = list(config["patterns"])
        if config.get("level"):
            request["level"] = config["level"]
        if config.get("fixity"):
            request["fixity"] = True
        try:
            validation.validate("pipelinejob_index", request)
        except ValidationError as exc:  # a stored configuration that no longer validates
            ctx.log.error(f"not indexing {job['uuid']}: {exc.message}")
            return None
        return ctx.send("jobs-indexer", request, key=follow)


# -- tags (issue 15) -------------------------------------------------------------------------
#
# A tag change is not a sixteenth lifecycle event: it changes no state, and is allowed
# exactly where ``update`` is (any state but RETIRED). So it is applied as an ``update``
# whose data is {"tags": {"set": ..., "remove": ...}} — in the history like any other —
# and the same compare-and-set writes the job's new ``tags`` and ``tag_pairs``.


def parse_tag(actor: Actor, body: dict[str, Any], params: Params) -> Message:
    """A ``pipelinejob_tag`` message (the token may come as ``token=``)."""
    message = dict(body)
    if "token" not in message and params.get("token"):
        message["token"] = params["token"]
    actor.validated("pipelinejob_tag", message)
    return Message("tag", message, message.get("token"))


def apply_tag(ctx: Context, msg: Message) -> dict[str, Any]:
    """Set and remove tags of a job: with its update token, an admin token, or sent
    with an admin key; refused (409) on a RETIRED job."""
    uuid = msg.body["uuid"]
    wanted: dict[str, str] = dict(msg.body.get("set") or {})
    gone: list[str] = list(msg.body.get("remove") or [])
    tags.changed({}, wanted, gone)  # a key both set and removed: refused before any read

    def authorize(job: dict[str, Any]) -> None:
        if ctx.role == "admin":
            return
        ctx.runtime.tokens.authorize(
            uuid, int(job.get("token_rotation", 0)), msg.token, action="change the tags of"
        )

    def changes(job: dict[str, Any]) -> dict[str, Any]:
        return tags.fields(tags.changed(job.get("tags"), wanted, gone))

    try:
        result = ctx.runtime.jobs.apply(
            uuid,
            Event.UPDATE,
            {"tags": {"set": wanted, "remove": gone}},
            delivery_id=ctx.execution_id,
            sender=ctx.sender,
            check=authorize,
            changes=changes,
        )
    except TransitionRefused as refused:
        raise TransitionRefused(
            uuid=uuid,
            state=refused.state,
            event="tag",
            allowed=refused.allowed,
            reason=f"job {uuid} is {refused.state}: the tags of a RETIRED job cannot change",
        ) from refused
    job = result.job
    ctx.log.info(f"Job {uuid}: tags now {job.get('tags') or {}}")
    return {
        "uuid": uuid,
        "tags": job.get("tags") or {},
        "state": job["state"],
        "applied": result.applied,
        "duplicate": result.duplicate,
    }


ACTOR = JobsManager()
