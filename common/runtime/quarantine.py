"""Poisoned records: set the one that fails aside, say why once, and go on.

A record the runtime cannot handle — one the store cannot decode
(:class:`~pipelinejobs.errors.CorruptDocument`), or a decodable one missing a field or
holding one of the wrong type — must cost only itself. Recovery at worker start-up,
the periodic sweep, reaping lost launches and each delivery handle records one at a
time, and hand one that fails to :class:`Quarantine`:

* a record that cannot be read or updated (an execution, the job an event is for, a
  nonce being redeemed) is moved to the store's quarantine with the reason
  (:meth:`~pipelinejobs.adapters.store.base.Store.quarantine`); ``pipelinejobs
  quarantine`` lists it,
  and reading it over HTTP answers 404 "quarantined: <reason>";
* an execution that is readable but cannot be run or recovered is closed as ERROR
  with a reason saying why, so it stays readable and is never picked up again.

Each is logged once: a corrupt record at ERROR the first time this process meets it,
the move at WARNING when it happens. Only what a record can cause is caught
(:data:`RECORD_ERRORS`), and an outage (:data:`OUTAGES`: the store or broker down, a
compare-and-set that kept losing) is re-raised before that, so an outage never
condemns a record.
"""

from __future__ import annotations

import logging
from typing import Any

from pipelinejobs.adapters.store.base import Document, Store
from pipelinejobs.adapters.store.codec import set_aside
from pipelinejobs.errors import (
    TRANSIENT,
    BusError,
    CorruptDocument,
    NotFound,
    PipelineJobsError,
)
from pipelinejobs.runtime.executions import Executions

log = logging.getLogger("pipelinejobs.quarantine")

#: What handling one record may raise because of that record: the guard around each
#: per-record step. Broader than the store's CorruptDocument on purpose — a decodable
#: record without ``status`` (KeyError), with a ``recoveries`` that is not a number
#: (TypeError, ValueError) — and narrower than ``Exception``: a bug elsewhere still
#: surfaces.
RECORD_ERRORS: tuple[type[BaseException], ...] = (
    PipelineJobsError,
    KeyError,
    TypeError,
    ValueError,
)
#: Failures of the service, not of a record: re-raise these before RECORD_ERRORS. The
#: transient ones, and any bus error (a bus that cannot publish is not the record's fault).
OUTAGES: tuple[type[PipelineJobsError], ...] = (*TRANSIENT, BusError)


def reason_of(exc: BaseException) -> str:
    """What is wrong with a record, from the error handling it raised."""
    if isinstance(exc, CorruptDocument):
        return exc.reason
    if isinstance(exc, PipelineJobsError):
        return exc.message
    if isinstance(exc, KeyError):
        return f"it has no field {exc.args[0]!r}" if exc.args else "a field is missing"
    return f"a field has the wrong type or value ({type(exc).__name__}: {exc})"


class Quarantine:
    """What the runtime does with a record it cannot handle (see the module docstring)."""

    def __init__(self, store: Store, executions: Executions | None = None) -> None:
        self.store = store
        self.executions = executions if executions is not None else Executions(store)

    def corrupt(self, exc: CorruptDocument) -> bool:
        """Set aside the record ``exc`` names; True if this call moved it."""
        return set_aside(self.store, exc)

    def set_aside(self, collection: str, key: Any, reason: str) -> bool:
        """Move record ``key`` of ``collection`` to the quarantine; True if this call
        moved it (False: it was gone already, perhaps set aside by another worker)."""
        moved = self.store.quarantine(collection, key, reason)
        if moved:
            log.warning(
                "%s record %s moved to the quarantine (%s); `pipelinejobs quarantine` lists it",
                collection,
                key,
                reason,
            )
        return moved

    def record(self, collection: str, key: Any, exc: BaseException) -> bool:
        """A record of ``collection`` that failed with ``exc``: the corrupt record the
        error names (it may be another one it depends on), else this one, is set
        aside."""
        if isinstance(exc, CorruptDocument):
            return self.corrupt(exc)
        reason = reason_of(exc)
        log.error("%s record %s cannot be handled: %s", collection, key, reason)
        return self.set_aside(collection, key, reason)

    def execution(self, execution_id: str, exc: BaseException) -> Document | None:
        """An execution that cannot be run or recovered because of ``exc``.

        Corrupt: it is quarantined (None). Readable: it is closed as ERROR with the
        reason, and the ERROR record is returned; if even that write fails because of
        the record, it is quarantined after all.
        """
        if isinstance(exc, CorruptDocument):
            self.corrupt(exc)
            return None
        if isinstance(exc, NotFound):  # deleted or set aside meanwhile: nothing to do
            return None
        reason = f"execution {execution_id} cannot be run: {reason_of(exc)}"
        log.error("%s; it is closed as ERROR", reason)
        error = {
            "error": "CorruptDocument",
            "message": reason,
            "collection": self.executions.collection,
            "key": execution_id,
        }
        try:
            return self.executions.finish(execution_id, error=error)
        except OUTAGES:
            raise
        except RECORD_ERRORS as again:
            self.record(self.executions.collection, execution_id, again)
            return None
