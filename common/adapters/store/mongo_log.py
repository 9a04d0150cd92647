"""MongoDB's log step: :meth:`~pipelinejobs.adapters.store.base.Store.advance` without
multi-document transactions.

``advance`` (a job's transition and its history record) spans two collections, and a
server without a replica set has no multi-document transaction. It is made to look
atomic by keeping the newest record **in the parent** (``last_entry``) as well as in
the log, with one invariant: *when a parent's compare-and-set succeeds, every record
before the one it carries is already in the log*. The steps (:meth:`MongoLogStore.advance`):

1. read the parent's ``version`` and ``last_entry`` (stale version: return None);
2. refuse a record whose key is the parent's ``last_entry`` or already in the log
   (DuplicateDocument) — one query for it and for ``last_entry``;
3. **roll forward**: if ``last_entry`` is not in the log (the writer that put it there
   died, or its insert failed, after its compare-and-set), insert it now — before
   anything else can follow it;
4. the compare-and-set: ``$set`` the fields and ``last_entry`` = the new record,
   ``$inc`` the version, filtered on the version read in step 1 (lost: None);
5. insert the record into the log. If that fails, the event still happened (step 4
   is the commit point): the record waits in ``last_entry`` for step 3 of the next
   writer, and readers merge it meanwhile.

Inserts into the log are idempotent upserts by the record's key (a unique index also
holds the log's (parent, sequence number)), so a roll-forward racing the original
insert, or two roll-forwards, write the record once. A reader never sees a record
whose compare-and-set failed (step 5 and any roll-forward come after step 4
succeeded), and never misses one: all but the newest are in the log, and the newest
is in the log or in the ``last_entry`` it read with the parent — so a reader reads the
parent first, then the log up to the parent's count, and merges ``last_entry`` when
the log lacks it (inserting it too: a reader may roll forward as well, with a plain
``insert`` whose DuplicateDocument means someone did already). The duplicate check of
step 2 is per parent: another writer appending the same key to *this* parent must
win its compare-and-set first, which makes ours stale.
"""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Mapping
from typing import Any

from pymongo.errors import DuplicateKeyError, PyMongoError

from pipelinejobs.adapters.store.base import LAST_RECORD, CollectionSpec, Document, Store
from pipelinejobs.adapters.store.codec import checked, dumps
from pipelinejobs.errors import DuplicateDocument, NotFound, StoreUnavailable

log = logging.getLogger("pipelinejobs.store")


class MongoLogStore(Store):
    """The log step of :class:`~pipelinejobs.adapters.store.mongo.MongoStore`, in terms of
    its collections and its single-document compare-and-set."""

    @abstractmethod
    def _coll(self, collection: str) -> tuple[CollectionSpec, Any]:
        """The spec and the pymongo collection (indexes made on first use)."""

    @abstractmethod
    def _compare_and_set(
        self, collection: str, key: Any, version: int, change: dict[str, Any]
    ) -> Document | None:
        """``find_one_and_update`` filtered on ``version``: the new document, None when
        stale, NotFound when there is none."""

    def advance(
        self,
        collection: str,
        key: Any,
        *,
        version: int,
        set: Mapping[str, Any] | None = None,
        record: tuple[str, Document],
    ) -> Document | None:
        """The five steps of the module docstring."""
        log_spec, record_key = self.check_record(collection, set, record)
        spec, coll = self._coll(collection)
        _, log_coll = self._coll(log_spec.name)
        entry = {**record[1], "version": 0}
        dumps(dict(set or {}), collection, key)
        dumps(entry, log_spec.name, record_key)
        fields = {"_id": False, spec.key: True, "version": True, LAST_RECORD: True}
        try:
            parent = coll.find_one({spec.key: key}, fields)
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB read failed: {exc}") from exc
        if parent is None:
            raise NotFound(f"no {collection} document {key}", key=key)
        if checked(spec, key, parent)["version"] != version:
            return None
        pending = parent.get(LAST_RECORD)
        pending_key = pending.get(log_spec.key) if isinstance(pending, dict) else None
        wanted = [record_key] if pending_key is None else [record_key, pending_key]
        found = self._find_keys(log_coll, log_spec.key, wanted)
        if record_key in found or pending_key == record_key:
            raise DuplicateDocument(f"{log_spec.name} {record_key} already exists", key=key)
        if pending_key is not None and pending_key not in found:
            self._append(log_coll, log_spec.key, pending)  # roll forward, before we follow it
        change = {"$set": {**dict(set or {}), LAST_RECORD: entry}, "$inc": {"version": 1}}
        new = self._compare_and_set(collection, key, version, change)
        if new is not None:
            self._append_after_commit(collection, key, log_coll, entry)
        return new

    @staticmethod
    def _find_keys(log_coll: Any, key_field: str, keys: list[Any]) -> set[Any]:
        """Which of ``keys`` the log holds."""
        try:
            return {
                d.get(key_field)
                for d in log_coll.find({key_field: {"$in": keys}}, {"_id": False, key_field: True})
            }
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB read failed: {exc}") from exc

    @staticmethod
    def _append(log_coll: Any, key_field: str, entry: Document) -> None:
        """Insert ``entry`` into the log unless it is there: an upsert by its key, so
        the original insert and any roll-forward write it once. Two upserts racing can
        both try to insert, and one fails on the unique index: that one finds it there."""
        try:
            log_coll.update_one(
                {key_field: entry[key_field]}, {"$setOnInsert": dict(entry)}, upsert=True
            )
        except DuplicateKeyError:
            try:
                there = log_coll.find_one({key_field: entry[key_field]}, {"_id": False})
            except PyMongoError as exc:
                raise StoreUnavailable(f"MongoDB read failed: {exc}") from exc
            if there is None:  # its (parent, seq) place is taken by another record
                log.error(
                    "%s record %s: its place in the log is taken by another record",
                    log_coll.name,
                    entry[key_field],
                )
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB log insert failed: {exc}") from exc

    def _append_after_commit(
        self, collection: str, key: Any, log_coll: Any, entry: Document
    ) -> None:
        """Step 5: the parent's compare-and-set has committed the record, so a failure
        here is not the caller's — it waits in ``last_entry`` to be rolled forward."""
        spec = self.spec(log_coll.name)
        try:
            self._append(log_coll, spec.key, entry)
        except StoreUnavailable as exc:
            log.warning(
                "%s %s: record %s is kept in its last_entry until the next writer "
                "rolls it forward (%s)",
                collection,
                key,
                entry.get(spec.key),
                exc.message,
            )
