"""MongoDB store: the production backend.

Documents are stored as they are (plus MongoDB's own ``_id``, never returned). Each
collection has a unique index on its key and an index per filterable field, created
on first use. ``update`` is a single ``find_one_and_update`` whose filter includes
the expected ``version`` and whose update is ``$set`` + ``$push`` + ``$unset`` +
``$inc`` — the server applies it atomically, so no read-modify-write can lose a write.

``advance`` (a job's transition and its history record, across two collections) is
:mod:`pipelinejobs.adapters.store.mongo_log`'s: how it looks atomic without
multi-document transactions is written there.

The client is created lazily and is safe to share between threads; it must not be
carried across ``fork`` (pymongo's rule), so a child process makes its own.

Writes are checked as strict JSON first (BSON would take a NaN that no JSON reader
can), and every document read is checked by :func:`pipelinejobs.adapters.store.codec.checked`: one
written by hand without its ``version`` is a CorruptDocument, skipped by ``find``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pymongo
from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from pipelinejobs.adapters.store.base import (
    LAST_RECORD,
    QUARANTINE,
    CollectionSpec,
    Document,
    Filter,
    In,
    Page,
    Range,
    decode_cursor,
    encode_cursor,
)
from pipelinejobs.adapters.store.codec import checked, dumps, raw_text, report_corrupt
from pipelinejobs.adapters.store.mongo_log import MongoLogStore
from pipelinejobs.errors import CorruptDocument, DuplicateDocument, NotFound, StoreUnavailable

_NO_ID = {"_id": False}


class MongoStore(MongoLogStore):
    """Documents in a MongoDB database, one collection per store collection."""

    def __init__(
        self,
        uri: str = "mongodb://127.0.0.1:27017",
        database: str = "pipelinejobs",
        *,
        client: Any = None,
    ) -> None:
        self.uri = uri
        self.database_name = database
        self._client = client
        self._client_pid = os.getpid() if client is not None else None
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def _db(self) -> Any:
        if self._client is None or self._client_pid != os.getpid():
            self._client = pymongo.MongoClient(
                self.uri, serverSelectionTimeoutMS=5000, tz_aware=False
            )
            self._client_pid = os.getpid()
            self._ready = set()
        return self._client[self.database_name]

    def _coll(self, collection: str) -> tuple[CollectionSpec, Any]:
        spec = self.spec(collection)
        coll = self._db()[collection]
        if collection not in self._ready:
            with self._lock:
                if collection not in self._ready:
                    try:
                        coll.create_index(spec.key, unique=True)
                        for f in (*spec.single_indexes(), *spec.multi):
                            coll.create_index(
                                [(f, pymongo.ASCENDING), (spec.key, pymongo.ASCENDING)]
                            )
                        for fields in spec.compound:
                            coll.create_index([(f, pymongo.ASCENDING) for f in (*fields, spec.key)])
                        for fields in spec.unique:
                            coll.create_index([(f, pymongo.ASCENDING) for f in fields], unique=True)
                    except PyMongoError as exc:
                        raise StoreUnavailable(f"MongoDB at {self.uri}: {exc}") from exc
                    self._ready.add(collection)
        return spec, coll

    def insert(
        self, collection: str, doc: Document, *, record: tuple[str, Document] | None = None
    ) -> Document:
        """With ``record``: the document (holding it as ``last_entry``), then the record
        — steps 4 and 5 of the module docstring, so a lost second insert is rolled
        forward like a lost append."""
        spec, coll = self._coll(collection)
        key = self.key_of(collection, doc)
        dumps(doc, collection, key)
        stored = {**doc, "version": 0}
        log_coll = None
        if record is not None:
            log_spec, record_key = self.check_record(collection, None, record)
            _, log_coll = self._coll(log_spec.name)
            stored[LAST_RECORD] = {**record[1], "version": 0}
            dumps(stored[LAST_RECORD], log_spec.name, record_key)
            if self._find_keys(log_coll, log_spec.key, [record_key]):
                raise DuplicateDocument(f"{log_spec.name} {record_key} already exists", key=key)
        try:
            coll.insert_one(dict(stored))
        except DuplicateKeyError as exc:
            raise DuplicateDocument(f"{collection} {key} already exists", key=key) from exc
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB insert failed: {exc}") from exc
        if record is not None:
            self._append_after_commit(collection, key, log_coll, stored[LAST_RECORD])
        return stored

    def get(self, collection: str, key: Any) -> Document | None:
        spec, coll = self._coll(collection)
        try:
            doc = coll.find_one({spec.key: key}, _NO_ID)
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB read failed: {exc}") from exc
        return None if doc is None else checked(spec, key, doc)

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
        self.check_change(collection, set, push, unset)
        dumps(dict(set or {}), collection, key)
        dumps(dict(push or {}), collection, key)
        change: dict[str, Any] = {"$inc": {"version": 1}}
        if set:
            change["$set"] = dict(set)
        if push:
            change["$push"] = {name: {"$each": list(items)} for name, items in push.items()}
        if unset:
            change["$unset"] = {name: "" for name in unset}
        return self._compare_and_set(collection, key, version, change)

    def _compare_and_set(
        self, collection: str, key: Any, version: int, change: dict[str, Any]
    ) -> Document | None:
        spec, coll = self._coll(collection)
        try:
            # _id is fetched and dropped here rather than projected away: mongomock
            # re-reads the new document by _id, and without it by the filter, whose
            # old version no longer matches, so it would report every update as lost.
            doc = coll.find_one_and_update(
                {spec.key: key, "version": version},
                change,
                return_document=ReturnDocument.AFTER,
            )
            fields = {"_id": False, spec.key: True, "version": True}
            current = None if doc else coll.find_one({spec.key: key}, fields)
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB update failed: {exc}") from exc
        if doc is None:
            if current is None:
                raise NotFound(f"no {collection} document {key}", key=key)
            checked(spec, key, current)  # one without a version would never match: corrupt
            return None
        doc.pop("_id", None)
        return checked(spec, key, doc)

    def put_many(self, collection: str, docs: Sequence[Document]) -> int:
        spec, coll = self._coll(collection)
        if not docs:
            return 0
        keys = [self.key_of(collection, d) for d in docs]
        for key, doc in zip(keys, docs, strict=True):
            dumps(doc, collection, key)
        try:
            versions = {
                d[spec.key]: d["version"] if isinstance(d.get("version"), int) else -1
                for d in coll.find({spec.key: {"$in": keys}}, {spec.key: True, "version": True})
            }
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB read failed: {exc}") from exc
        ops = []
        for key, doc in zip(keys, docs, strict=True):
            version = versions[key] + 1 if key in versions else 0
            versions[key] = version
            ops.append(
                pymongo.ReplaceOne({spec.key: key}, {**doc, "version": version}, upsert=True)
            )
        try:
            coll.bulk_write(ops, ordered=True)
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB batch write failed: {exc}") from exc
        return len(docs)

    def delete(self, collection: str, key: Any) -> bool:
        spec, coll = self._coll(collection)
        try:
            return coll.delete_one({spec.key: key}).deleted_count > 0
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB delete failed: {exc}") from exc

    def _quarantine(self, spec: CollectionSpec, key: Any, entry: Callable[[str], Document]) -> bool:
        """Copy, then delete that very document (by ``_id``). MongoDB without a replica
        set has no multi-document transaction, so the order is chosen to lose nothing:
        a crash in between leaves the record in both places, and a second quarantine
        rewrites the same entry (its id is derived) and finishes the move."""
        _, coll = self._coll(spec.name)
        _, target = self._coll(QUARANTINE)
        try:
            raw = coll.find_one({spec.key: key})
            if raw is None:
                return False
            record_id = raw.pop("_id")
            record = entry(raw_text(raw))
            target.replace_one({"id": record["id"]}, record, upsert=True)
            return bool(coll.delete_one({"_id": record_id}).deleted_count)
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB quarantine failed: {exc}") from exc

    def _query(self, spec: CollectionSpec, where: Filter | None) -> dict[str, Any]:
        query: dict[str, Any] = {}
        alternatives: list[dict[str, Any]] = []
        for name, cond in (where or {}).items():
            wanted = list(cond.values) if isinstance(cond, In) else [cond]
            if name in spec.multi and None in wanted:
                # None on an array field means "no members", as in the other backends:
                # no element that is not null (missing, null, [] and [null] all pass;
                # {name: None} alone would miss []).
                empty = {name: {"$not": {"$elemMatch": {"$ne": None}}}}
                members = [w for w in wanted if w is not None]
                alternatives.append(
                    {"$or": [empty, {name: {"$in": members}}]} if members else empty
                )
            elif isinstance(cond, In):
                query[name] = {"$in": wanted}
            elif isinstance(cond, Range):
                rng: dict[str, Any] = {"$ne": None}
                if cond.gte is not None:
                    rng["$gte"] = cond.gte
                if cond.lt is not None:
                    rng["$lt"] = cond.lt
                query[name] = rng
            else:
                query[name] = cond
        return {"$and": [query, *alternatives]} if alternatives else query

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
        spec, coll = self._coll(collection)
        self.check_filter(collection, where, order)
        order = order or spec.key
        limit = max(limit, 0)
        query = self._query(spec, where)
        if after is not None:
            value, key = decode_cursor(after)
            query = {"$and": [query, self._after(order, spec.key, value, key, descending)]}
        direction = pymongo.DESCENDING if descending else pymongo.ASCENDING
        sort = (
            [(order, direction)]
            if order == spec.key
            else [(order, direction), (spec.key, direction)]
        )
        try:
            docs = list(coll.find(query, _NO_ID).sort(sort).limit(limit + 1))
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB query failed: {exc}") from exc
        page = Page()
        for doc in docs[:limit]:
            try:
                page.items.append(checked(spec, doc.get(spec.key), doc))
            except CorruptDocument as exc:  # one bad document must not fail the page
                report_corrupt(exc)
                page.skipped.append(exc)
        if len(docs) > limit and limit:
            # From the raw document: the last one may be one skipped.
            last = docs[limit - 1]
            page.next = encode_cursor(last.get(order), last.get(spec.key))
        return page

    @staticmethod
    def _after(
        order: str, key_field: str, value: Any, key: Any, descending: bool
    ) -> dict[str, Any]:
        """Keyset condition matching the (null-first ascending) sort order."""
        op = "$lt" if descending else "$gt"
        if order == key_field:
            return {key_field: {op: key}}
        if value is None:
            if descending:
                return {order: None, key_field: {"$lt": key}}
            return {"$or": [{order: {"$ne": None}}, {order: None, key_field: {"$gt": key}}]}
        same = {order: value, key_field: {op: key}}
        if descending:
            return {"$or": [{order: {"$lt": value}}, same, {order: None}]}
        return {"$or": [{order: {"$gt": value}}, same]}

    def count(
        self, collection: str, where: Filter | None = None, *, group_by: str | None = None
    ) -> int | dict[Any, int]:
        spec, coll = self._coll(collection)
        self.check_filter(collection, where, group_by)
        query = self._query(spec, where)
        try:
            if group_by is None:
                return int(coll.count_documents(query))
            rows = coll.aggregate(
                [{"$match": query}, {"$group": {"_id": f"${group_by}", "n": {"$sum": 1}}}]
            )
            return {row["_id"]: row["n"] for row in rows}
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB count failed: {exc}") from exc

    def ping(self) -> None:
        try:
            self._db().command("ping")
        except PyMongoError as exc:
            raise StoreUnavailable(f"MongoDB at {self.uri} is not reachable: {exc}") from exc

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
