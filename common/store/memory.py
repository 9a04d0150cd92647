"""An in-memory store: the whole contract in dicts under one lock.

For unit tests and for trying things out; nothing survives the process. It passes
the same contract suite as the real backends, so code tested against it behaves
the same on SQLite and MongoDB.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from common.errors import DuplicateDocument, NotFound
from common.store.base import (
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
        self._lock = threading.Lock()

    def _table(self, collection: str) -> dict[Any, Document]:
        self.spec(collection)
        return self._data.setdefault(collection, {})

    def insert(self, collection: str, doc: Document) -> Document:
        key = self.key_of(collection, doc)
        with self._lock:
            table = self._table(collection)
            if key in table:
                raise DuplicateDocument(f"{collection} {key} already exists", key=key)
            stored = copy.deepcopy(dict(doc))
            stored["version"] = 0
            table[key] = stored
            return copy.deepcopy(stored)

    def get(self, collection: str, key: Any) -> Document | None:
        with self._lock:
            doc = self._table(collection).get(key)
            return copy.deepcopy(doc) if doc is not None else None

    def update(
        self,
        collection: str,
        key: Any,
        *,
        version: int,
        set: Mapping[str, Any] | None = None,
        push: Mapping[str, Sequence[Any]] | None = None,
    ) -> Document | None:
        self.check_change(collection, set, push)
        with self._lock:
            doc = self._table(collection).get(key)
            if doc is None:
                raise NotFound(f"no {collection} document {key}", key=key)
            if doc.get("version") != version:
                return None
            new = copy.deepcopy(doc)
            new.update(copy.deepcopy(dict(set or {})))
            for name, items in (push or {}).items():
                new[name] = list(new.get(name) or []) + copy.deepcopy(list(items))
            new["version"] = version + 1
            self._table(collection)[key] = new
            return copy.deepcopy(new)

    def put_many(self, collection: str, docs: Sequence[Document]) -> int:
        # Check every key first: a bad document fails the batch before anything is
        # written, as the SQLite transaction does.
        keys = [self.key_of(collection, doc) for doc in docs]
        with self._lock:
            table = self._table(collection)
            for key, doc in zip(keys, docs, strict=True):
                old = table.get(key)
                stored = copy.deepcopy(dict(doc))
                stored["version"] = 0 if old is None else old.get("version", 0) + 1
                table[key] = stored
            return len(docs)

    def delete(self, collection: str, key: Any) -> bool:
        with self._lock:
            return self._table(collection).pop(key, None) is not None

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
        spec = self.spec(collection)
        self.check_filter(collection, where, order)
        order = order or spec.key
        with self._lock:
            docs = [d for d in self._table(collection).values() if matches(spec, d, where)]
        docs.sort(key=lambda d: (sort_key(d.get(order)), d[spec.key]), reverse=descending)
        if after is not None:
            mark = (sort_key(decode_cursor(after)[0]), decode_cursor(after)[1])
            docs = [
                d
                for d in docs
                if (
                    (sort_key(d.get(order)), d[spec.key]) < mark
                    if descending
                    else (sort_key(d.get(order)), d[spec.key]) > mark
                )
            ]
        page = [copy.deepcopy(d) for d in docs[: max(limit, 0)]]
        nxt = None
        if len(docs) > limit and page:
            nxt = encode_cursor(page[-1].get(order), page[-1][spec.key])
        return Page(page, nxt)

    def count(
        self, collection: str, where: Filter | None = None, *, group_by: str | None = None
    ) -> int | dict[Any, int]:
        spec = self.spec(collection)
        self.check_filter(collection, where, group_by)
        with self._lock:
            docs = [d for d in self._table(collection).values() if matches(spec, d, where)]
        if group_by is None:
            return len(docs)
        counts: dict[Any, int] = {}
        for d in docs:
            counts[d.get(group_by)] = counts.get(d.get(group_by), 0) + 1
        return counts
