"""What an actor is, and what it is handed when a message arrives.

An actor is a class with an ``alias``, the schemas it accepts, a :meth:`Actor.parse`
that turns a raw message (JSON body and URL parameters, as Abaco delivers them) into
a validated :class:`Message`, and a :meth:`Actor.handle` that acts on it. ``parse``
runs at every boundary — in the gateway before anything is queued, and in the
worker before anything is done — so handlers never see unvalidated input.

Handlers receive a :class:`Context`: the stores and services they may use, a log
that becomes the execution's log lines, and :meth:`Context.send`, the only way to
reach another actor. Actors never import each other.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pipelinejobs.access.keys import owner_label
from pipelinejobs.domain import validation
from pipelinejobs.domain.clock import now
from pipelinejobs.errors import MalformedMessage
from pipelinejobs.runtime.executions import derived_id

if TYPE_CHECKING:  # pragma: no cover
    from pipelinejobs.runtime.dispatch import Runtime

Params = Mapping[str, str]


@dataclass(frozen=True)
class Message:
    """A validated message: which of the actor's message kinds it is, and its body."""

    kind: str
    body: dict[str, Any]
    token: str | None = None
    #: The extra payload a URL-parameter message carries (its POST body).
    data: dict[str, Any] | None = None


def actor_id(alias: str, domain: str = "sd2e.org") -> str:
    """The Abaco-style id of an actor: stable for a deployment's domain."""
    return derived_id("actor", domain, alias)


class Actor:
    """Base class of the four actors."""

    alias: ClassVar[str]
    description: ClassVar[str] = ""
    #: Names of the schemas (in ``schemas/``) this actor's messages are checked against.
    accepts: ClassVar[tuple[str, ...]] = ()

    def parse(self, message: Any, params: Params) -> Message:  # pragma: no cover - abstract
        """Classify and validate; raise a ValidationError naming what is wrong."""
        raise NotImplementedError

    def admit(  # noqa: B027
        self, runtime: Runtime, msg: Message, role: str, owner: str | None = None
    ) -> None:
        """Checks that need the runtime (the disk, the store) or the sender's ``role``
        (``admin`` or ``user``) and ``owner`` (its credential's, None without one) but
        must still refuse a message before it is queued.
        Nothing by default. What it checks of the role, ``handle`` checks again with
        ``ctx.role``: the worker trusts the stored execution, not the gateway alone."""

    def quick(self, message: Mapping[str, Any]) -> bool:
        """Whether handling this stored message is short work in the store alone, so
        its execution's start need not be written before it: it is written with the
        end, in one compare-and-set (a failure still writes it first). The price: a
        worker that dies mid-way leaves the execution SUBMITTED rather than RUNNING,
        and its redelivery counts as a first attempt. Never for a message whose
        handler writes progress (that write needs the RUNNING record). No by default."""
        return False

    def handle(self, ctx: Context, msg: Message) -> dict[str, Any]:  # pragma: no cover
        """Act on a validated message; return the execution's result."""
        raise NotImplementedError

    # -- helpers shared by the actors' parse methods ----------------------------------

    @staticmethod
    def body_of(message: Any) -> dict[str, Any]:
        """The JSON object body of a message ({} when there is none)."""
        if message is None or message == "":
            return {}
        if not isinstance(message, dict):
            raise MalformedMessage(
                f"the message must be a JSON object, not {type(message).__name__}", path=""
            )
        return message

    @staticmethod
    def validated(schema: str, body: dict[str, Any]) -> dict[str, Any]:
        validation.validate(schema, body)
        return body


class ExecutionLog:
    """Log lines of one execution, in Abaco's ``<id> LEVEL message`` form.

    Lines go to the execution record (readable over HTTP) and to the process log.
    """

    #: Most lines kept on the record: the first :data:`HEAD`, one line saying how many
    #: were left out, and the newest. An execution acting on 10,000 jobs (a bulk
    #: action) logs a line per job, and its record is rewritten at every progress write.
    MAX_LINES = 1000
    HEAD = 100

    def __init__(self, execution_id: str, actor: str, clock: Callable[[], float]) -> None:
        self.execution_id = execution_id
        self.lines: list[str] = []
        self._dropped = 0
        self._clock = clock
        self._logger = logging.getLogger(f"pipelinejobs.actor.{actor}")

    def _keep(self, line: str) -> None:
        self.lines.append(line)
        if len(self.lines) <= self.MAX_LINES:
            return
        del self.lines[self.HEAD + 1 if self._dropped else self.HEAD]
        self._dropped += 1
        mark = (
            f"{now(self._clock)} {self.execution_id} WARNING ... {self._dropped} lines not "
            f"kept here (the process log has every one) ..."
        )
        if self._dropped == 1:
            self.lines.insert(self.HEAD, mark)
        else:
            self.lines[self.HEAD] = mark

    def _add(self, level: int, text: str) -> None:
        name = logging.getLevelName(level)
        self._keep(f"{now(self._clock)} {self.execution_id} {name} {text}")
        self._logger.log(level, "%s %s", self.execution_id, text)

    def debug(self, text: str) -> None:
        self._add(logging.DEBUG, text)

    def info(self, text: str) -> None:
        self._add(logging.INFO, text)

    def warning(self, text: str) -> None:
        self._add(logging.WARNING, text)

    def error(self, text: str) -> None:
        self._add(logging.ERROR, text)

    def exception(self, text: str, exc: BaseException) -> None:
        """An unexpected error: the traceback goes to the process log only."""
        self._keep(f"{now(self._clock)} {self.execution_id} ERROR {text}")
        self._logger.error(
            "%s %s\n%s", self.execution_id, text, "".join(traceback.format_exception(exc))
        )


@dataclass
class Context:
    """What a handler may use while it handles one execution."""

    runtime: Runtime
    actor: str
    execution: dict[str, Any]
    log: ExecutionLog
    _sent: int = field(default=0, init=False)
    #: Which delivery of the execution this is (its ``attempts`` when it started).
    attempt: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.attempt = int(self.execution.get("attempts") or 0)

    @property
    def execution_id(self) -> str:
        return str(self.execution["id"])

    @property
    def role(self) -> str:
        """The sender's role, as stored on the execution (``user`` when it says none:
        least privilege)."""
        return str(self.execution.get("role") or "user")

    @property
    def sender(self) -> str | None:
        """Who sent the message, when known: ``key:<key id prefix>`` for one posted
        over HTTP, or the actor that sent it (kept on the job's history records)."""
        who = self.execution.get("sender")
        return str(who) if who else None

    @property
    def owner(self) -> str | None:
        """Whose credential sent the message, as ``keys list`` names it (a key's listed
        id — a nonce's owner's —, ``system`` for the service's own), kept as a job's
        ``owner``; None for a message sent without one (the CLI's ``send``)."""
        who = self.execution.get("owner")
        return owner_label(str(who)) if who else None

    @property
    def base_url(self) -> str:
        """The public base URL of this execution: ``gateway.public_url`` when set, else
        the one its message came in through (recorded on the execution at submit; an
        actor's send passes it on), else — a message sent without a request, by the
        CLI — the configured callback URL (``launcher.public_url``)."""
        config = self.runtime.config
        if config.gateway.public_url:
            return str(config.gateway.public_url).rstrip("/")
        return str(self.execution.get("base_url") or config.public_url).rstrip("/")

    def agent_url(self) -> str:
        """This actor as an absolute URL, as the seed's record names a job's ``agent``:
        ``https://host/actors/v2/<actor id>``."""
        return f"{self.base_url}/actors/v2/{self.runtime.actor_id(self.actor)}"

    def task_url(self) -> str:
        """This execution as an absolute URL (a job's ``task``):
        ``<agent_url>/executions/<execution id>``."""
        return f"{self.agent_url()}/executions/{self.execution_id}"

    def send(
        self,
        alias: str,
        message: dict[str, Any],
        params: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
        delay: float = 0.0,
        priority: str | None = None,
    ) -> str:
        """Send ``message`` to actor ``alias``; returns the new execution's id.
        ``delay``: delivered no sooner than that many seconds from now. ``priority``:
        for a message about another job than this execution's (a release of a
        dependent), that job's; by default this execution's.

        The child's id is derived from this execution's id and the send's position,
        so if this execution is delivered again after a crash, the same child is
        found rather than a second one made. With ``key`` it is derived from that and
        ``alias`` instead (the uuid of the event it follows: one follow-up per event
        and actor): a follow-up of an event sent with an ``event_key`` is one message
        whichever execution sends it.
        """
        self._sent += 1
        child = (
            derived_id("follow-up", key, alias)
            if key
            else derived_id(self.execution_id, str(self._sent))
        )
        execution = self.runtime.submit(
            alias,
            message,
            params,
            execution_id=child,
            parent=self.execution_id,
            sender=self.actor,
            role=self.role,  # an actor acts for its sender, never above it
            base_url=self.execution.get("base_url"),  # it came in through the same URL
            delay=delay,
            # On behalf of the same job, unless the sender says whose it is.
            priority=priority or self.execution.get("priority"),
        )
        self.log.info(
            f"Sent {message.get('name') or 'message'} to {alias} (execution {execution['id']})"
        )
        return str(execution["id"])

    def progress(self, **values: Any) -> None:
        """Make progress visible on the execution while it runs (stamped with this
        delivery's attempt and the time; not written once another delivery of the
        execution has started, or it has finished)."""
        self.execution = self.runtime.executions.progress(
            self.execution_id,
            values,
            logs=self.log.lines,
            current=self.execution,
            attempt=self.attempt,
        )
