"""An in-memory store: the whole contract in dicts under one lock.

For unit tests and for trying things out; nothing survives the process. It passes
the same contract suite as the real backends, so code tested against it behaves
the same on SQLite and MongoDB: it refuses what is not strict JSON, as they do, and
reads every record through :func:`pipelinejobs.adapters.store.codec.checked`, so a
value put into its dicts by hand (a test corrupting a record) is skipped or refused
like a corrupt row.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipelinejobs.adapters.store.base import (
    LAST_RECORD,
    QUARANTINE,
    CollectionSpec,
    Document,
    Filter,
    In,
    Page,
    Range,
    Store,
    decode_cursor,
    encode_cursor,
)
from pipelinejobs.adapters.store.codec import checked, dumps, raw_text, report_corrupt
from pipelinejobs.errors import CorruptDocument, DuplicateDocument, NotFound


def matches(spec: CollectionSpec, doc: Mapping[str, Any], where: Filter | None) -> bool:
    """Whether ``doc`` satisfies ``where`` (equality, In, Range; membership on multi)."""
    for name, cond in (where or {}).items():
        value = doc.get(name)
        if name in spec.multi:
            # None stands for "no members" (missing, null or empty), as in the other
            # backends; a null inside the array is not a member.
            members = [m for m in value or [] if m is not None]
            wanted = cond.values if isinstance(cond, In) else (cond,)
            if not any((w is None and not members) or w in members for w in wanted):
                return False
        elif isinstance(cond, In):
            if value not in cond.values:
                return False
        elif isinstance(cond, Range):
            if value is None:
                return False
            if cond.gte is not None and not value >= cond.gte:
                return False
            if cond.lt is not None and not value < cond.lt:
                return False
        elif value != cond:
            return False
    return True


def sort_key(value: Any) -> tuple[int, Any]:
    """None sorts first, like SQLite NULLs and MongoDB's null."""
    return (0, "") if value is None else (1, value)


class MemoryStore(Store):
    """Dict-backed store; every operation holds one lock, so it is atomic."""

    def __init__(self) -> None:
        self._data: dict[str, dict[Any, Document]] = {}
        self._indexes: dict[tuple[str, tuple[str, ...]], dict[tuple[Any, ...], Any]] = {}
        self._lock = threading.Lock()

    def _table(self, collection: str) -> dict[Any, Document]:
        self.spec(collection)
        return self._data.setdefault(collection, {})

    def _checked(self, collection: str, key: Any, value: Any) -> Document:
        return checked(self.spec(collection), key, value)

    def insert(
        self, collection: str, doc: Document, *, record: tuple[str, Document] | None = None
    ) -> Document:
        key = self.key_of(collection, doc)
        dumps(doc, collection, key)
        entry = self._entry(collection, None, record) if record else None
        with self._lock:
            table = self._table(collection)
            if key in table:
                raise DuplicateDocument(f"{collection} {key} already exists", key=key)
            stored = copy.deepcopy(dict(doc))
            stored["version"] = 0
            self._check_new(collection, stored)
            if record and entry is not None:
                self._check_new(record[0], entry)
                stored[LAST_RECORD] = entry
                self._append(record[0], entry)
            self._append(collection, stored)
            return copy.deepcopy(stored)

    def _entry(
        self, collection: str, set: Mapping[str, Any] | None, record: tuple[str, Document]
    ) -> Document:
        """The record as the log will hold it (checked, strict JSON, at version 0)."""
        spec, key = self.check_record(collection, set, record)
        dumps(record[1], spec.name, key)
        return {**copy.deepcopy(dict(record[1])), "version": 0}

    def _check_new(self, log: str, entry: Document) -> None:
        """DuplicateDocument if the log holds the record's key or its unique fields
        (call under the lock)."""
        spec = self.spec(log)
        table = self._table(log)
        key = entry[spec.key]
        if key in table:
            raise DuplicateDocument(f"{log} {key} already exists", key=key)
        for fields in spec.unique:
            wanted = tuple(entry.get(f) for f in fields)
            if wanted in self._unique(log, fields):
                raise DuplicateDocument(
                    f"{log} already holds a record with {dict(zip(fields, wanted, strict=True))}",
                    key=key,
                )

    def _unique(self, log: str, fields: tuple[str, ...]) -> dict[tuple[Any, ...], Any]:
        """The values of ``fields`` taken in ``log`` (under the lock): built when first
        asked, kept up to date by the log's appends, dropped by any other write to it."""
        index = self._indexes.get((log, fields))
        if index is None:
            index = {
                tuple(doc.get(f) for f in fields): key
                for key, doc in self._table(log).items()
                if isinstance(doc, dict)
            }
            self._indexes[(log, fields)] = index
        return index

    def _append(self, log: str, entry: Document) -> None:
        """Store a record checked by :meth:`_check_new` (under the lock)."""
        spec = self.spec(log)
        self._table(log)[entry[spec.key]] = copy.deepcopy(entry)
        for fields in spec.unique:
            self._unique(log, fields)[tuple(entry.get(f) for f in fields)] = entry[spec.key]

    def _forget(self, collection: str) -> None:
        """Drop the unique-field indexes of ``collection`` (a write other than an append)."""
        for name, fields in list(self._indexes):
            if name == collection:
                del self._indexes[(name, fields)]

    def get(self, collection: str, key: Any) -> Document | None:
        with self._lock:
            doc = self._table(collection).get(key)
            return copy.deepcopy(self._checked(collection, key, doc)) if doc is not None else None

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
        with self._lock:
            doc = self._current(collection, key, version)
            if doc is None:
                return None
            new = copy.deepcopy(doc)
            new.update(copy.deepcopy(dict(set or {})))
            for name, items in (push or {}).items():
                new[name] = list(new.get(name) or []) + copy.deepcopy(list(items))
            for name in unset or ():
                new.pop(name, None)
            new["version"] = version + 1
            self._forget(collection)
            self._table(collection)[key] = new
            return copy.deepcopy(new)

    def _current(self, collection: str, key: Any, version: int) -> Document | None:
        """Document ``key`` if it is at ``version``, None if not (call under the lock);
        NotFound if there is none."""
        doc = self._table(collection).get(key)
        if doc is None:
            raise NotFound(f"no {collection} document {key}", key=key)
        doc = self._checked(collection, key, doc)
        return doc if doc.get("version") == version else None

    def advance(
        self,
        collection: str,
        key: Any,
        *,
        version: int,
        set: Mapping[str, Any] | None = None,
        record: tuple[str, Document],
    ) -> Document | None:
        """The compare-and-set and the append under the one lock: all or nothing."""
        entry = self._entry(collection, set, record)
        dumps(dict(set or {}), collection, key)
        with self._lock:
            doc = self._current(collection, key, version)
            if doc is None:
                return None
            self._check_new(record[0], entry)
            new = copy.deepcopy(doc)
            new.update(copy.deepcopy(dict(set or {})))
            new[LAST_RECORD] = entry
            new["version"] = version + 1
            self._table(collection)[key] = new
            self._append(record[0], entry)
            return copy.deepcopy(new)

    def put_many(self, collection: str, docs: Sequence[Document]) -> int:
        # Check every key first: a bad document fails the batch before anything is
        # written, as the SQLite transaction does.
        keys = [self.key_of(collection, doc) for doc in docs]
        for key, doc in zip(keys, docs, strict=True):
            dumps(doc, collection, key)
        with self._lock:
            self._forget(collection)
            table = self._table(collection)
            for key, doc in zip(keys, docs, strict=True):
                old = table.get(key)
                stored = copy.deepcopy(dict(doc))
                # A corrupt record in the way is replaced, as SQLite's upsert would.
                version = old.get("version") if isinstance(old, dict) else None
                stored["version"] = version + 1 if isinstance(version, int) else 0
                table[key] = stored
            return len(docs)

    def delete(self, collection: str, key: Any) -> bool:
        with self._lock:
            self._forget(collection)
            return self._table(collection).pop(key, None) is not None

    def _quarantine(self, spec: CollectionSpec, key: Any, entry: Callable[[str], Document]) -> bool:
        with self._lock:
            self._forget(spec.name)
            table = self._table(spec.name)
            if key not in table:
                return False
            record = entry(raw_text(table.pop(key)))
            self._table(QUARANTINE)[record["id"]] = record
            return True

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
        """Rows are sorted and paged by their table key, so a corrupt one keeps its
        place: it is skipped (and listed) on the page it falls on, like a SQLite row.
        A value that is not an object cannot be matched or placed at all: it is listed
        on the first page of any filter."""
        spec = self.spec(collection)
        self.check_filter(collection, where, order)
        order = order or spec.key
        limit = max(limit, 0)
        with self._lock:
            table = list(self._table(collection).items())
        rows = [(k, v) for k, v in table if isinstance(v, dict) and matches(spec, v, where)]
        rows.sort(key=lambda row: (sort_key(row[1].get(order)), row[0]), reverse=descending)
        if after is not None:
            value, key = decode_cursor(after)
            mark = (sort_key(value), key)
            rows = [
                (k, v)
                for k, v in rows
                if (
                    (sort_key(v.get(order)), k) < mark
                    if descending
                    else (sort_key(v.get(order)), k) > mark
                )
            ]
        page = Page()
        unplaced = [(k, v) for k, v in table if not isinstance(v, dict)] if after is None else []
        for key, value in [*unplaced, *rows[:limit]]:
            try:
                page.items.append(copy.deepcopy(checked(spec, key, value)))
            except CorruptDocument as exc:
                report_corrupt(exc)
                page.skipped.append(exc)
        if len(rows) > limit and limit:
            key, value = rows[limit - 1]
            page.next = encode_cursor(value.get(order), key)
        return page

    def count(
        self, collection: str, where: Filter | None = None, *, group_by: str | None = None
    ) -> int | dict[Any, int]:
        spec = self.spec(collection)
        self.check_filter(collection, where, group_by)
        with self._lock:
            docs = [
                d
                for d in self._table(collection).values()
                if isinstance(d, dict) and matches(spec, d, where)
            ]
        if group_by is None:
            return len(docs)
        counts: dict[Any, int] = {}
        for d in docs:
            counts[d.get(group_by)] = counts.get(d.get(group_by), 0) + 1
        return counts
