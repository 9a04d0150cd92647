"""The one exception hierarchy of PipelineJobs, and the one table mapping it to HTTP.

Every error a caller can cause is a :class:`PipelineJobsError`. Each carries a
message a person can act on and a ``detail`` dict a program can read (the field
path, the current state, the allowed values...). Code that translates a library
error raises one of these ``from`` the original, so the cause stays in the log.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class PipelineJobsError(Exception):
    """Root of every error PipelineJobs raises on purpose."""

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        self.detail = {k: v for k, v in detail.items() if v is not None}

    def to_dict(self) -> dict[str, Any]:
        """What a caller is told: the kind of error, the reason, and the detail."""
        return {"error": type(self).__name__, "message": self.message, **self.detail}


# -- configuration ---------------------------------------------------------------------


class ConfigError(PipelineJobsError):
    """A setting is missing, malformed or unsafe (e.g. a default secret in production)."""


# -- bad input ---------------------------------------------------------------------------


class ValidationError(PipelineJobsError):
    """Input does not have the required form. Nothing was changed."""


class SchemaValidationError(ValidationError):
    """A message or document fails its JSON Schema.

    ``path`` is the JSON pointer-like path of the failing field (``components/0``),
    ``schema`` the title of the schema that refused it.
    """

    def __init__(self, message: str, *, schema: str, path: str, errors: list[str] | None = None):
        super().__init__(message, schema=schema, path=path, errors=errors)
        self.schema = schema
        self.path = path


class MalformedMessage(ValidationError):
    """A message cannot be decoded or has no recognisable kind."""


class UnknownIdentifierType(ValidationError):
    """A typed UUID whose prefix is not in the type table, or of the wrong type."""


# -- authorization -----------------------------------------------------------------------


class AuthError(PipelineJobsError):
    """Base of credential errors."""


class MissingCredential(AuthError):
    """No token, key or nonce was presented where one is required."""


class InvalidCredential(AuthError):
    """A key or nonce that does not exist, was revoked, used up or expired."""


class PermissionDenied(AuthError):
    """A credential was presented but does not grant this action.

    A wrong or forged update token lands here: the caller is authenticated by its
    key or nonce, and the token is the per-document right it lacks.
    """


# -- existence and state -----------------------------------------------------------------


class NotFound(PipelineJobsError):
    """The named pipeline, job, execution, actor or nonce does not exist."""


class Quarantined(NotFound):
    """The named record was found corrupt and moved to the quarantine (404: it is no
    longer where it was; the message says why, and ``pipelinejobs quarantine`` shows
    its raw content to an operator)."""


class Conflict(PipelineJobsError):
    """The request is well-formed but conflicts with the stored state."""


class NoLongerOverdue(Conflict):
    """A reconciler's ``fail`` reached a job that is not overdue any more (a heartbeat
    came, it finished or was retried since the reconciler looked): nothing written."""


class TransitionRefused(Conflict):
    """An event that the job's current state does not allow. The job is unchanged."""

    def __init__(
        self,
        *,
        uuid: str | None,
        state: str | None,
        event: str,
        allowed: Iterable[str],
        reason: str | None = None,
    ) -> None:
        allowed = sorted(allowed)
        job = f"job {uuid}" if uuid else "the job"
        if reason is None and allowed:
            reason = (
                f"event '{event}' is not allowed for {job} in state {state}; "
                f"it is allowed from: {', '.join(allowed)}"
            )
        elif reason is None:
            reason = f"event '{event}' cannot be applied to an existing job ({job}, {state})"
        super().__init__(reason, uuid=uuid, state=state, event=event, allowed=allowed)
        self.state = state
        self.event = event
        self.allowed = allowed


class DuplicateDocument(Conflict):
    """A document with this key already exists (raised by ``Store.insert``)."""


class ImmutableField(Conflict):
    """An update tried to change a field that identifies the document."""


# -- store -------------------------------------------------------------------------------


class StoreError(PipelineJobsError):
    """The document store failed or was asked something it cannot do."""


class StoreUnavailable(StoreError):
    """The store cannot be reached."""


class TooManyConflicts(StoreError):
    """A compare-and-set kept losing to concurrent writers past the retry budget
    (``store.cas_retries``). Nothing was written, so the request may simply be sent
    again: ``retry_after`` (detail) says when."""


class UnstorableDocument(StoreError):
    """A value the store will not write because it is not strict JSON: NaN or Infinity,
    a string that cannot be encoded as UTF-8 (a lone surrogate), or a type JSON has no
    form for. Nothing is written. The gateway refuses such input before anything is
    stored, so one reaching the store is a programming error (500, as StoreError)."""


class CorruptDocument(StoreError):
    """A stored record that cannot be read or updated: text that does not decode as
    strict JSON, a value that is not an object, or one without its key or integer
    ``version``. Named by collection and key so the caller can set it aside
    (``Store.quarantine``) and go on with the others; a read of it answers 500."""

    def __init__(self, collection: str, key: Any, reason: str) -> None:
        super().__init__(
            f"{collection} record {key} is corrupt: {reason}",
            collection=collection,
            key=key,
            reason=reason,
        )
        self.collection = collection
        self.key = key
        self.reason = reason


# -- bus ---------------------------------------------------------------------------------


class BusError(PipelineJobsError):
    """The message bus failed or was asked for something it does not have."""


class BusUnavailable(BusError):
    """The broker cannot be reached, or a message could not be published."""


class UnknownActor(NotFound):
    """No actor with this alias or id."""


# -- delivery ---------------------------------------------------------------------------


class TimeLimitExceeded(PipelineJobsError):
    """An actor ran past its time limit (``bus.time_limit``, ``bus.time_limits``) on one
    message and was interrupted; its execution ends ERROR. Not transient: run again,
    it would most likely run as long. What it did before the limit stands (effects are
    idempotent, so sending the message again after raising the limit is safe)."""


#: The one definition of a transient failure: a service that did not answer or a
#: document too contended, not anything wrong with the message. A delivery that fails
#: with one is re-queued with back-off (the runtime's Retries middleware; the Celery
#: bus when even the execution record could not be written); any other error is final.
TRANSIENT: tuple[type[PipelineJobsError], ...] = (
    StoreUnavailable,
    TooManyConflicts,
    BusUnavailable,
)


# -- launchers --------------------------------------------------------------------------


class LauncherError(PipelineJobsError):
    """A launcher backend could not start, watch or stop a job's compute."""


class LauncherUnavailable(LauncherError):
    """The compute backend (e.g. the Docker engine) cannot be reached."""


# -- transport (filled in by the gateway) -------------------------------------------------


class PayloadTooLarge(ValidationError):
    """A request body over the configured limit."""


class UnsupportedMediaType(ValidationError):
    """A content type the route does not take."""


#: The one place an error becomes an HTTP status. Looked up along the class's MRO,
#: so a subclass inherits its parent's code unless it is listed itself.
HTTP_STATUS: Mapping[type[PipelineJobsError], int] = {
    PipelineJobsError: 500,
    ConfigError: 500,
    ValidationError: 400,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    AuthError: 401,
    PermissionDenied: 403,
    NotFound: 404,
    Conflict: 409,
    StoreError: 500,
    StoreUnavailable: 503,
    BusError: 500,
    BusUnavailable: 503,
    TooManyConflicts: 503,
    LauncherUnavailable: 503,
}


#: Errors that mean "nothing was written; the same request may succeed in a moment":
#: a document too contended, a store or broker that did not answer. The gateway answers
#: them with ``Retry-After``: this many seconds, unless the error carries its own
#: ``retry_after`` detail (a compare-and-set that ran out says how long its burst lasts).
RETRY_AFTER: Mapping[type[PipelineJobsError], int] = {
    StoreUnavailable: 5,
    BusUnavailable: 5,
    TooManyConflicts: 1,
}


def http_status(error: BaseException | type[BaseException]) -> int:
    """The HTTP status for an error (or error class); 500 outside the hierarchy."""
    kind = error if isinstance(error, type) else type(error)
    for cls in kind.__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def retry_after(error: BaseException) -> int | None:
    """Seconds to wait before sending the request that raised ``error`` again; None
    when sending it again would not help (looked up along the MRO, as the status is)."""
    for cls in type(error).__mro__:
        if cls in RETRY_AFTER:
            own = error.detail.get("retry_after") if isinstance(error, PipelineJobsError) else None
            if isinstance(own, int) and not isinstance(own, bool) and own >= 0:
                return own
            return RETRY_AFTER[cls]
    return None


def http_status_named(name: str) -> int:
    """The HTTP status of the error class called ``name`` (as stored in an execution's
    ``error``); 500 for a name outside the hierarchy, such as ``InternalError``."""
    cls = globals().get(name)
    if isinstance(cls, type) and issubclass(cls, PipelineJobsError):
        return http_status(cls)
    return 500
