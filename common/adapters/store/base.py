"""The document store interface every backend implements.

Collections of JSON documents (pipelines, jobs, runs, files, executions, nonces, keys,
the console's sessions, the pipelines' claims on app ids), each keyed by one field;
``events``, the jobs' append-only history log; ``migrations``, the data conversions
done; and ``quarantine``, for records set aside. The interface is deliberately
small — the operations the system needs, not a query language:

* ``insert`` a new document (refused if its key exists),
* ``get`` one by key,
* ``update`` one by **compare-and-set** on its ``version``: top-level fields are set
  or removed, items are appended to arrays, and the version goes up by one, all or
  nothing; a stale version returns ``None`` and the caller re-reads and retries,
* ``advance`` one by compare-and-set **and append a record to a log collection** in
  the same step (a job's state and its history entry); ``insert`` can start a log the
  same way. The parent keeps its newest record as ``last_entry``
  (:data:`LAST_RECORD`), which is what lets a backend without multi-document
  transactions (MongoDB) make the pair look atomic: see :meth:`Store.advance`,
* ``put_many`` upserts in batches (the indexer's file records),
* ``find`` a page filtered on the collection's indexed fields, with a keyset cursor,
* ``count`` (optionally grouped by an indexed field), ``delete``,
* ``quarantine`` a record that cannot be read or handled: its raw content moves to the
  ``quarantine`` collection, so one poisoned record never blocks the others.

Backends write strict JSON only and read defensively (:mod:`pipelinejobs.adapters.store.codec`): a
stored record that cannot be decoded is a ``CorruptDocument`` from ``get`` and
``update``, and ``find`` skips it (listing it in ``Page.skipped``) instead of failing
the whole page.

Every stored document carries ``version`` (0 when inserted). Backends return
copies: mutating a returned document never changes the store.

All backends agree on the edge cases (tests/common/store checks them): a filter
value ``None`` matches a missing or null field (on an array field: one with no
members), alone or inside ``In``; missing and null sort first ascending and last
descending, ties broken by the key in the same direction.
"""

from __future__ import annotations

import base64
import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pipelinejobs.domain.clock import now
from pipelinejobs.errors import CorruptDocument, NotFound, Quarantined, StoreError

Document = dict[str, Any]


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection is keyed and filtered by."""

    name: str
    key: str
    #: Scalar top-level fields that ``find``/``count`` may filter, sort or group on.
    indexed: tuple[str, ...] = ()
    #: Array fields whose members ``find`` may filter on ("jobs whose child_of has X").
    multi: tuple[str, ...] = ()
    #: Compound indexes (each followed by the key) for the filters + orders the API
    #: uses most: with them a filtered, sorted page is an index range scan at any size
    #: instead of a sort of every matching document. One led by an array field
    #: (``("tag_pairs", "created")``) indexes its members in that order: a page of the
    #: documents holding one member, newest first, is then a range of it too, where
    #: otherwise every holder would be read and sorted (20,000 jobs for one tag).
    compound: tuple[tuple[str, ...], ...] = ()
    #: Indexed fields only ever filtered together with a leading compound field
    #: (files' level within a job): they get a column but no index of their own.
    unindexed: tuple[str, ...] = ()
    #: Field tuples no two documents may share (a log's (parent, sequence number)).
    unique: tuple[tuple[str, ...], ...] = ()

    def filterable(self) -> tuple[str, ...]:
        return (self.key, *self.indexed, *self.multi)

    def single_indexes(self) -> tuple[str, ...]:
        """Indexed fields that need an index of their own: a field that leads a
        compound index is already served by it, and every extra index is paid for on
        every write (the indexer writes one record per file)."""
        leading = {fields[0] for fields in (*self.compound, *self.unique)}
        return tuple(f for f in self.indexed if f not in leading and f not in self.unindexed)

    def member_orders(self, field: str) -> tuple[str, ...]:
        """The scalar fields the members of array ``field`` are indexed in the order
        of (the compound indexes it leads), each an ``indexed`` field: a backend keeping
        members apart (SQLite's side tables) keeps these values beside each member."""
        return tuple(dict.fromkeys(f for c in self.compound if c[0] == field for f in c[1:]))

    def members_touched(self, changed: Iterable[str]) -> list[str]:
        """The array fields whose indexed members a change of the fields ``changed``
        rewrites: the arrays changed, and those whose members carry a changed field."""
        names = set(changed)
        return [f for f in self.multi if f in names or names & set(self.member_orders(f))]


COLLECTIONS: dict[str, CollectionSpec] = {
    spec.name: spec
    for spec in (
        CollectionSpec(
            "pipelines", "uuid", ("status", "name", "created", "updated"), ("component_ids",)
        ),
        CollectionSpec(
            "jobs",
            "uuid",
            # ``owner``: who created it (issue 15), ``/jobs?owner=`` newest first.
            # ``run``: the run it was launched in (issue 15), ``/runs/<id>/jobs``.
            # ``deadline_at``, ``silent_at``: when it is overdue (issue 16), null once it
            # cannot be; the reconciler's query is a range of each from the oldest.
            (
                "state",
                "pipeline_uuid",
                "created",
                "updated",
                "owner",
                "run",
                "deadline_at",
                "silent_at",
            ),  # fmt: skip
            # ``derived_from`` and ``acted_on``: what a job's inputs were (parent jobs,
            # catalog files), so the lineage API finds the jobs made from a file or job
            # by one index lookup. ``tag_pairs``: its tags as ``key:value``
            # (pipelinejobs.domain.tags), for ``/jobs?tag=``. ``depends_on``: the jobs
            # it waits for (issue 16), so a parent's dependents are one lookup.
            ("child_of", "derived_from", "acted_on", "tag_pairs", "depends_on"),
            (
                ("state", "created"),
                ("pipeline_uuid", "created"),
                ("state", "pipeline_uuid", "created"),
                ("state", "updated"),
                ("owner", "created"),
                ("run", "created"),
                ("run", "state"),
                # ``/jobs?tag=``, newest first: one index range at any size.
                ("tag_pairs", "created"),
            ),
        ),
        # Runs (issue 15): named batches of one pipeline's jobs, newest first, by
        # pipeline, priority, owner and tag (``tag_pairs``, as on jobs).
        CollectionSpec(
            "runs",
            "uuid",
            ("pipeline_uuid", "priority", "owner", "created", "name"),
            ("tag_pairs",),
            (
                ("pipeline_uuid", "created"),
                ("owner", "created"),
                ("priority", "created"),
                ("tag_pairs", "created"),
            ),
        ),
        CollectionSpec(
            "files",
            "uuid",
            ("job_uuid", "level", "path", "present", "updated"),
            ("child_of", "generated_by"),
            (("job_uuid", "path"), ("job_uuid", "present"), ("job_uuid", "level", "path")),
            ("level", "path", "present", "updated"),
        ),
        CollectionSpec(
            "executions",
            "id",
            # ``job``: the job a message is about (jobs-manager, indexer), so a job's
            # executions are one index range (the console's job page). ``parent``: the
            # execution that sent it, so a bulk action's per-job executions are counted
            # by status and paged by one index range (pipelinejobs.runtime.bulk).
            ("actor", "status", "created", "updated", "job", "parent"),
            (),
            (
                ("actor", "created"),
                ("actor", "status", "created"),
                ("status", "updated"),
                ("job", "created"),
                ("parent", "created"),
            ),
        ),
        CollectionSpec("nonces", "id", ("actor", "owner", "created")),
        CollectionSpec("keys", "id", ("role", "created")),
        # One record per applied job event, keyed by its typed (108) uuid — which is
        # what makes a redelivered event a duplicate — and unique on (job, seq).
        # ``date`` is indexed for the events applied over a recent window (the
        # console's overview: events/s over the last hour).
        CollectionSpec(
            "events",
            "uuid",
            ("job_uuid", "seq", "date"),
            unindexed=("seq",),
            unique=(("job_uuid", "seq"),),
        ),
        # Bulk actions (issue 15), keyed by their execution's id: the jobs each acts on.
        CollectionSpec("bulk", "id", ("owner", "created")),
        CollectionSpec("migrations", "id"),
        # Which period of each kind of periodic work was claimed, by whom
        # (pipelinejobs.runtime.periodic): one record per kind.
        CollectionSpec("periodic", "id"),
        # Webhooks (issue 16): subscriptions, each one's per-job delivery cursor, and
        # every delivery attempt, newest first per subscription (pipelinejobs.domain.subscriptions).
        CollectionSpec(
            "webhooks", "id", ("owner", "enabled", "created"), (), (("owner", "created"),)
        ),
        CollectionSpec("webhook_cursors", "id"),
        CollectionSpec("webhook_deliveries", "id", ("subscription",)),
        # One claim per component (app) id, keyed by it: inserting one is what makes an
        # app id belong to one pipeline, race-free on every backend (a unique key).
        CollectionSpec("app_ids", "id", ("pipeline_uuid",)),
        # The console's sign-in sessions, keyed by a hash of the cookie's secret.
        CollectionSpec("sessions", "id", ("expires",)),
        # One record per running worker process (``<host>:<pid>``), rewritten at each
        # heartbeat: pipelinejobs.observability.heartbeats.
        CollectionSpec("workers", "id", ("last_seen",)),
        CollectionSpec("quarantine", "id", ("collection", "date")),
    )
}

#: The field in which a document advanced with a log record keeps that record (see
#: :meth:`Store.advance`); the store writes it, callers only read it.
LAST_RECORD = "last_entry"

#: Where ``Store.quarantine`` puts records set aside: ``{id: "<collection>/<key>",
#: collection, key, reason, date, raw}``, ``raw`` being the stored content as text.
QUARANTINE = "quarantine"


def quarantine_id(collection: str, key: Any) -> str:
    """The quarantine entry of record ``key`` of ``collection``."""
    return f"{collection}/{key}"


def not_found(store: Store, collection: str, key: Any, message: str, **detail: Any) -> NotFound:
    """The error for record ``key`` of ``collection`` being absent: Quarantined (still
    404) with the reason when it was set aside, so a caller learns why it is gone
    instead of being told it never existed; NotFound with ``message`` otherwise. Only
    asked after a miss, so it costs nothing when the record is there."""
    entry = store.get(QUARANTINE, quarantine_id(collection, key))
    if entry is None:
        return NotFound(message, **detail)
    return Quarantined(
        f"{message}: quarantined: {entry.get('reason')} (set aside {entry.get('date')}; "
        f"an operator sees it with `pipelinejobs quarantine`)",
        **detail,
    )


@dataclass(frozen=True)
class In:
    """Filter: the field equals one of ``values``."""

    values: tuple[Any, ...]

    def __init__(self, values: Iterable[Any]) -> None:
        object.__setattr__(self, "values", tuple(values))


@dataclass(frozen=True)
class Range:
    """Filter: ``gte <= field < lt`` (either bound optional). Compares as stored
    (ISO-8601 date strings compare correctly as text)."""

    gte: Any = None
    lt: Any = None


Filter = Mapping[str, Any]  # field -> scalar (equality / membership), In or Range


@dataclass
class Page:
    """One page of ``find``: the documents and the cursor for the next page (or None)."""

    items: list[Document] = field(default_factory=list)
    next: str | None = None
    #: Records that matched but could not be read, left out of ``items``: the caller
    #: may quarantine them (``next`` still moves past them).
    skipped: list[CorruptDocument] = field(default_factory=list)


def encode_cursor(order_value: Any, key: Any) -> str:
    raw = json.dumps([order_value, key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, Any]:
    """The (sort value, key) a cursor points after; StoreError names a bad one."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        decoded = json.loads(base64.urlsafe_b64decode(padded.encode()))
        # Only the [value, key] pair encode_cursor makes: a tampered "ab" would
        # otherwise unpack into ("a", "b") and page from a made-up position.
        if not isinstance(decoded, list) or len(decoded) != 2:
            raise ValueError("not a [value, key] pair")
        order_value, key = decoded
    except (ValueError, TypeError) as exc:
        raise StoreError(
            f"cursor {cursor!r} is not one this service issued", path="cursor"
        ) from exc
    return order_value, key


class Store(ABC):
    """A document store. See the module docstring for the contract."""

    def spec(self, collection: str) -> CollectionSpec:
        try:
            return COLLECTIONS[collection]
        except KeyError:
            raise StoreError(
                f"unknown collection {collection!r}; known: {', '.join(COLLECTIONS)}"
            ) from None

    def check_filter(self, collection: str, where: Filter | None, *names: str | None) -> None:
        """Refuse filters, sorts and groupings on fields the collection does not index.

        ``names`` are sort or group fields: those must be scalar, so an array (multi)
        field is refused there, and a Range on one is refused too — every backend
        would otherwise do something different with it (compare lists, crash, match
        any member).
        """
        spec = self.spec(collection)
        allowed = spec.filterable()
        for name in [*(where or {}), *[n for n in names if n]]:
            if name not in allowed:
                raise StoreError(
                    f"{collection} cannot be filtered or sorted on {name!r}; "
                    f"indexed fields: {', '.join(allowed)}",
                    path=name,
                )
        for name in spec.multi:
            if name in names or isinstance((where or {}).get(name), Range):
                raise StoreError(
                    f"{collection} can only filter the array field {name!r} by member",
                    path=name,
                )

    def check_change(
        self,
        collection: str,
        set: Mapping[str, Any] | None,
        push: Mapping[str, Any] | None,
        unset: Sequence[str] | None = None,
    ) -> None:
        """Refuse an update that touches the key or ``version``: the backends would
        disagree (SQLite would fork the row under a new key, MongoDB reject ``version``
        in ``$set`` next to ``$inc``), and both are the store's to manage. A field both
        set (or pushed) and removed is refused too: which wins would be up to the
        backend."""
        key = self.spec(collection).key
        for name in (key, "version"):
            if name in (set or {}) or name in (push or {}) or name in (unset or ()):
                raise StoreError(f"an update cannot change {collection} {name!r}", path=name)
        for name in unset or ():
            if name in (set or {}) or name in (push or {}):
                raise StoreError(f"an update cannot both set and remove {name!r}", path=name)

    def check_record(
        self, collection: str, set: Mapping[str, Any] | None, record: tuple[str, Document]
    ) -> tuple[CollectionSpec, Any]:
        """The log's spec and the record's key, for :meth:`advance` and ``insert`` with
        a record; refuses a record for the document's own collection, and ``set``
        fields that are the store's (the key, ``version``, :data:`LAST_RECORD`). An
        array with member indexes may be set (a job's ``tag_pairs``): its members are
        re-indexed in the same step."""
        log_collection, doc = record
        if log_collection == collection:
            raise StoreError(f"{collection} cannot be its own log", path="record")
        log_spec = self.spec(log_collection)
        self.check_change(collection, set, None)
        for name in set or {}:
            if name == LAST_RECORD:
                raise StoreError(f"advance cannot set {collection} {name!r}", path=name)
        return log_spec, self.key_of(log_collection, doc)

    def key_of(self, collection: str, doc: Mapping[str, Any]) -> Any:
        key = self.spec(collection).key
        if doc.get(key) in (None, ""):
            raise StoreError(f"a {collection} document needs its key field {key!r}", path=key)
        return doc[key]

    @abstractmethod
    def insert(
        self, collection: str, doc: Document, *, record: tuple[str, Document] | None = None
    ) -> Document:
        """Store a new document at version 0; DuplicateDocument if the key exists.

        With ``record`` (``(log collection, record)``), start the document's log as
        :meth:`advance` continues it: the document is stored with the record as its
        :data:`LAST_RECORD` and the record (at version 0) in the log, as one step;
        DuplicateDocument, nothing written, if either key exists."""

    @abstractmethod
    def get(self, collection: str, key: Any) -> Document | None:
        """The document with this key, or None."""

    @abstractmethod
    def update(
        self,
        collection: str,
        key: Any,
        *,
        version: int,
        set: Mapping[str, Any] | None = None,
        push: Mapping[str, Sequence[Any]] | None = None,
        unset: Sequence[str] | None = None,
    ) -> Document | None:
        """Compare-and-set. If the stored version is ``version``: set the top-level
        fields in ``set``, append the items of each ``push`` list to that array field,
        remove the fields named in ``unset``, increment the version, and return the new
        document — atomically. If the version differs return None and change nothing.
        NotFound if there is no such document."""

    @abstractmethod
    def advance(
        self,
        collection: str,
        key: Any,
        *,
        version: int,
        set: Mapping[str, Any] | None = None,
        record: tuple[str, Document],
    ) -> Document | None:
        """Compare-and-set document ``key`` (as :meth:`update` with ``set``) and append
        ``record`` to the log collection ``record[0]``, as one step: the document's cost
        does not grow with its log, because the log's records live beside it.

        If the stored version is ``version``: set the fields, store the record as the
        document's :data:`LAST_RECORD`, increment the version, insert the record (at
        version 0) into the log, and return the new document. A stale version returns
        None; a record whose key the log (or the document's ``last_entry``) already
        holds raises DuplicateDocument; in both cases nothing is written. NotFound if
        there is no such document.

        What a reader may rely on, on every backend: every record a document's
        earlier advances appended is in the log, and the newest is in the log **or**
        in the document's ``last_entry`` (both, once settled). SQLite and the memory
        store do it in one transaction, so the newest is always in both; MongoDB
        without a replica set has no multi-document transaction and does it in steps
        (see :meth:`pipelinejobs.adapters.store.mongo.MongoStore.advance`), so a reader
        merges ``last_entry`` into what it reads of the log.
        """

    @abstractmethod
    def put_many(self, collection: str, docs: Sequence[Document]) -> int:
        """Upsert documents by key (a replaced document's version goes up by one).
        Returns how many were written. Used for batches, not for contended updates."""

    @abstractmethod
    def delete(self, collection: str, key: Any) -> bool:
        """Remove a document; True if it existed."""

    @abstractmethod
    def find(
        self,
        collection: str,
        where: Filter | None = None,
        *,
        order: str | None = None,
        descending: bool = False,
        limit: int = 100,
        after: str | None = None,
    ) -> Page:
        """A page of documents matching ``where``, ordered by ``order`` (default the key)
        then the key; ``after`` is the previous page's ``next`` cursor."""

    @abstractmethod
    def count(
        self, collection: str, where: Filter | None = None, *, group_by: str | None = None
    ) -> int | dict[Any, int]:
        """How many documents match; with ``group_by``, a dict of value -> count."""

    def quarantine(self, collection: str, key: Any, reason: str) -> bool:
        """Set record ``key`` of ``collection`` aside: its raw content (whatever is
        stored, even text that does not decode) goes to the ``quarantine`` collection
        with the collection, key, reason and date, and the record (with its side-table
        rows) leaves its collection — in one step. False if it was already gone.

        A record quarantined again (its key stored and damaged anew) replaces its
        earlier entry: the entry says what was last set aside and why.
        """
        if collection == QUARANTINE:
            raise StoreError("a quarantine entry cannot itself be quarantined")
        spec = self.spec(collection)
        date = now()

        def entry(raw: str) -> Document:
            return {
                "id": quarantine_id(collection, key),
                "collection": collection,
                "key": key,
                "reason": reason,
                "date": date,
                "raw": raw,
                "version": 0,
            }

        return self._quarantine(spec, key, entry)

    @abstractmethod
    def _quarantine(self, spec: CollectionSpec, key: Any, entry: Callable[[str], Document]) -> bool:
        """The backend's primitive under :meth:`quarantine`: atomically read record
        ``key``'s raw content, store ``entry(raw as text)`` in the quarantine (replacing
        an entry with its id), and delete the record and its side-table rows. False,
        changing nothing, if there is no such record."""

    def ping(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Raise StoreUnavailable if the backend cannot be reached."""

    def close(self) -> None:  # noqa: B027 - optional hook, no-op by default
        """Release connections."""
