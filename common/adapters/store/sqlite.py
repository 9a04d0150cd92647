"""SQLite store: the embedded default, one file under the data directory.

Each collection is a table holding the JSON document, its version, and one indexed
column per filterable field; array fields that can be filtered on by member
(``child_of``) get a side table. The file runs in WAL mode, so readers never block
the writer, and every write is a ``BEGIN IMMEDIATE`` transaction: the version
check, the new document and its index rows commit together or not at all. That
makes ``update`` a real compare-and-set across threads *and* processes sharing the
file, and ``advance`` (a job's conditional UPDATE and its event's INSERT) one step;
``busy_timeout`` makes a writer wait for another process's lock instead of failing.
Connections (per thread and process) are
:mod:`pipelinejobs.adapters.store.sqlite_connections`'s; tables are created on first
use, not at import.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pipelinejobs.adapters.store.base import (
    COLLECTIONS,
    LAST_RECORD,
    QUARANTINE,
    CollectionSpec,
    Document,
    Filter,
    Page,
    Store,
    decode_cursor,
    encode_cursor,
)
from pipelinejobs.adapters.store.codec import loads, raw_text, report_corrupt
from pipelinejobs.adapters.store.sqlite_connections import SQLiteConnections
from pipelinejobs.adapters.store.sqlite_query import (
    added_columns,
    added_side_columns,
    added_side_tables,
    after_clause,
    column,
    dumps,
    fill_side_table,
    member_driver,
    member_page,
    scalar,
    schema_statements,
    side_table,
    split_field,
    update_statement,
    where_clauses,
)
from pipelinejobs.errors import CorruptDocument, DuplicateDocument, NotFound

#: The document column as bytes, decoded by
#: :func:`pipelinejobs.adapters.store.codec.loads`: text that
#: is not UTF-8 is then a CorruptDocument, not an error inside sqlite3 naming no record.
DOC = "CAST(doc AS BLOB)"


class SQLiteStore(SQLiteConnections, Store):
    """Documents in one SQLite file; safe for many threads and several processes."""

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0, cache_kib: int = 512
    ) -> None:
        # The connections keep a lock of their own: _create holds _ready_lock while it
        # opens a connection.
        super().__init__(path, busy_timeout=busy_timeout, cache_kib=cache_kib)
        self._ready: set[str] = set()
        self._ready_lock = threading.Lock()

    def _table(self, collection: str) -> CollectionSpec:
        spec = self.spec(collection)
        if collection in self._ready:
            return spec
        with self._ready_lock:
            if collection not in self._ready:
                self._create(spec)
                self._ready.add(collection)
        return spec

    def _create(self, spec: CollectionSpec) -> None:
        with self._write() as conn:
            # Array fields filterable since the table was made (jobs' derived_from):
            # their side tables are filled from the documents below.
            new_sides = added_side_tables(spec, conn)
            for sql in schema_statements(spec):
                if sql.startswith("CREATE INDEX") or sql.startswith("CREATE UNIQUE"):
                    continue
                conn.execute(sql)
            # A table made before its spec gained an indexed field lacks that column:
            # it is added and filled from the documents, in the same transaction, so
            # a second process opening the file sees it whole (or waits for it).
            for sql in added_columns(spec, conn):
                conn.execute(sql)
            # Side tables made before their members were ordered by a field (jobs'
            # tags by created) get its column, filled from the documents' rows.
            for sql in added_side_columns(spec, conn):
                conn.execute(sql)
            for field in new_sides:
                conn.execute(fill_side_table(spec, field))
            for sql in schema_statements(spec):
                if sql.startswith("CREATE INDEX") or sql.startswith("CREATE UNIQUE"):
                    conn.execute(sql)

    # -- writes --------------------------------------------------------------------------

    def _write_row(
        self,
        conn: sqlite3.Connection,
        spec: CollectionSpec,
        doc: Document,
        *,
        replace: bool,
        multi_changed: Sequence[str] | None = None,
    ) -> None:
        key = doc[spec.key]
        values = [
            key,
            doc["version"],
            dumps(doc, spec.name, key),
            *(scalar(doc.get(f)) for f in spec.indexed),
        ]
        cols = ", ".join(["k", "version", "doc", *(column(f) for f in spec.indexed)])
        marks = ", ".join("?" * len(values))
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        conn.execute(f'{verb} INTO "{spec.name}" ({cols}) VALUES ({marks})', values)
        self._write_members(
            conn, spec, key, doc, spec.multi if multi_changed is None else multi_changed
        )

    @staticmethod
    def _write_members(
        conn: sqlite3.Connection,
        spec: CollectionSpec,
        key: Any,
        doc: Mapping[str, Any],
        fields: Sequence[str],
    ) -> None:
        """Rewrite the side-table rows of the array ``fields`` of document ``key``
        (``doc``: the whole document, whose ordering fields each row carries)."""
        for f in fields:
            conn.execute(f"DELETE FROM {side_table(spec, f)} WHERE k = ?", (key,))
            members = {scalar(v) for v in (doc.get(f) or []) if v is not None}
            sql, carried = SQLiteStore._members_insert(spec, f, doc)
            conn.executemany(sql, [(v, key, *carried) for v in members])

    @staticmethod
    def _members_insert(
        spec: CollectionSpec, field: str, doc: Mapping[str, Any]
    ) -> tuple[str, list[Any]]:
        """The INSERT of one side-table row of ``field`` (member, key, then the
        fields its members are ordered by) and ``doc``'s values of those fields."""
        orders = spec.member_orders(field)
        cols = ", ".join(["v", "k", *(column(c) for c in orders)])
        marks = ", ".join("?" * (2 + len(orders)))
        sql = f"INSERT INTO {side_table(spec, field)} ({cols}) VALUES ({marks})"
        return sql, [scalar(doc.get(c)) for c in orders]

    def insert(
        self, collection: str, doc: Document, *, record: tuple[str, Document] | None = None
    ) -> Document:
        spec = self._table(collection)
        self.key_of(collection, doc)
        stored = {**doc, "version": 0}
        log_spec = None
        if record is not None:
            log_spec = self._table(self.check_record(collection, None, record)[0].name)
            stored[LAST_RECORD] = {**record[1], "version": 0}
        try:
            with self._write() as conn:
                self._write_row(conn, spec, stored, replace=False)
                if log_spec is not None:
                    self._write_row(conn, log_spec, stored[LAST_RECORD], replace=False)
        except sqlite3.IntegrityError as exc:
            key = doc[spec.key]
            what = f"{collection} {key}" + (" or its log record" if record else "")
            raise DuplicateDocument(f"{what} already exists", key=key) from exc
        return json.loads(dumps(stored, collection, doc[spec.key]))

    def get(self, collection: str, key: Any) -> Document | None:
        """The record, or None; CorruptDocument if what is stored cannot be read."""
        spec = self._table(collection)
        row = (
            self._conn().execute(f'SELECT {DOC} FROM "{spec.name}" WHERE k = ?', (key,)).fetchone()
        )
        return loads(row[0], spec, key) if row else None

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
        """The compare-and-set as one ``UPDATE ... WHERE version = ? RETURNING doc``.

        The new document is made by SQLite's JSON functions (``json_set`` for the set
        fields, ``json_insert`` at ``[#]`` for the pushed items), so the stored document
        is never decoded and re-encoded in Python, and only the indexes of columns that
        change are touched. A single statement is atomic; no transaction is needed.
        A stored document those functions refuse ("malformed JSON") is a
        CorruptDocument.
        """
        self.check_change(collection, set, push, unset)
        spec = self._table(collection)
        fields = dict(set or {})
        items = {name: list(values) for name, values in (push or {}).items()}
        gone = list(unset or ())
        if spec.members_touched((*fields, *items, *gone)):
            return self._update_rewriting(spec, key, version, fields, items, gone)
        with self._process_write_lock():
            row = self._apply_update(self._conn(), spec, key, version, fields, items, gone)
        return None if row is None else loads(row, spec, key)

    def _apply_update(
        self,
        conn: sqlite3.Connection,
        spec: CollectionSpec,
        key: Any,
        version: int,
        set: dict[str, Any],
        push: dict[str, list[Any]],
        unset: Sequence[str] = (),
    ) -> bytes | str | None:
        """Run the JSON compare-and-set on ``conn``: the new document's text, or None
        for a stale version; NotFound, or CorruptDocument for a document SQLite's JSON
        functions refuse ("malformed JSON")."""
        sql, args = update_statement(spec, key, version, set, push, unset)
        try:
            row = conn.execute(sql, args).fetchone()
        except sqlite3.OperationalError as exc:
            if "malformed JSON" not in str(exc):
                raise
            reason = "SQLite's JSON functions cannot apply an update to it (malformed JSON)"
            raise CorruptDocument(spec.name, key, reason) from exc
        if row is None:
            exists = conn.execute(f'SELECT 1 FROM "{spec.name}" WHERE k = ?', (key,)).fetchone()
            if exists is None:
                raise NotFound(f"no {spec.name} document {key}", key=key)
            return None
        return row[0]

    def advance(
        self,
        collection: str,
        key: Any,
        *,
        version: int,
        set: Mapping[str, Any] | None = None,
        record: tuple[str, Document],
    ) -> Document | None:
        """The compare-and-set and the record's INSERT in one IMMEDIATE transaction: they
        commit together or not at all. A record whose key (or place in its log) is taken
        fails the INSERT, which rolls the UPDATE back: DuplicateDocument. Array fields
        set (a job's ``tag_pairs``) have their side-table rows rewritten in it too."""
        log_spec, record_key = self.check_record(collection, set, record)
        spec, log_spec = self._table(collection), self._table(log_spec.name)
        entry = {**record[1], "version": 0}
        fields = {**dict(set or {}), LAST_RECORD: entry}
        try:
            with self._write() as conn:
                row = self._apply_update(conn, spec, key, version, fields, {})
                if row is not None:
                    self._write_row(conn, log_spec, entry, replace=False)
                    arrays = spec.members_touched(fields)
                    if arrays:
                        self._write_members(conn, spec, key, loads(row, spec, key), arrays)
        except sqlite3.IntegrityError as exc:
            raise DuplicateDocument(
                f"{log_spec.name} {record_key} (or its place in the log) is taken",
                key=record_key,
            ) from exc
        return None if row is None else loads(row, spec, key)

    def _update_rewriting(
        self,
        spec: CollectionSpec,
        key: Any,
        version: int,
        set: dict[str, Any],
        push: dict[str, list[Any]],
        unset: Sequence[str] = (),
    ) -> Document | None:
        """The compare-and-set for changes to array fields with side tables: read,
        change and rewrite the row and its side-table rows in one transaction."""
        with self._write() as conn:
            row = conn.execute(
                f'SELECT version, {DOC} FROM "{spec.name}" WHERE k = ?', (key,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no {spec.name} document {key}", key=key)
            if row[0] != version:
                return None
            doc = loads(row[1], spec, key)
            doc.update(json.loads(dumps(set, spec.name, key)))
            for name, items in push.items():
                doc[name] = list(doc.get(name) or []) + json.loads(dumps(items, spec.name, key))
            for name in unset:
                doc.pop(name, None)
            doc["version"] = version + 1
            touched = spec.members_touched((*set, *push, *unset))
            self._write_row(conn, spec, doc, replace=True, multi_changed=touched)
        return doc

    def put_many(self, collection: str, docs: Sequence[Document]) -> int:
        """Upsert a batch in one transaction with one statement per table, not one per
        document: the indexer writes a record per file, so per-row calls dominate."""
        spec = self._table(collection)
        if not docs:
            return 0
        keys = [self.key_of(collection, d) for d in docs]
        with self._write() as conn:
            versions: dict[Any, int] = {}
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ", ".join("?" * len(chunk))
                versions.update(
                    conn.execute(
                        f'SELECT k, version FROM "{spec.name}" WHERE k IN ({marks})', chunk
                    )
                )
            latest: dict[Any, Document] = {}
            for key, doc in zip(keys, docs, strict=True):
                versions[key] = versions[key] + 1 if key in versions else 0
                latest[key] = {**doc, "version": versions[key]}
            cols = ", ".join(["k", "version", "doc", *(column(f) for f in spec.indexed)])
            marks = ", ".join("?" * (3 + len(spec.indexed)))
            conn.executemany(
                f'INSERT OR REPLACE INTO "{spec.name}" ({cols}) VALUES ({marks})',
                [
                    [
                        key,
                        doc["version"],
                        dumps(doc, spec.name, key),
                        *(scalar(doc.get(f)) for f in spec.indexed),
                    ]
                    for key, doc in latest.items()
                ],
            )
            written = list(latest)
            for f in spec.multi:
                for start in range(0, len(written), 500):
                    chunk = written[start : start + 500]
                    conn.execute(
                        f"DELETE FROM {side_table(spec, f)} WHERE k IN "
                        f"({', '.join('?' * len(chunk))})",
                        chunk,
                    )
                orders = spec.member_orders(f)
                conn.executemany(
                    self._members_insert(spec, f, {})[0],
                    [
                        (v, key, *(scalar(doc.get(c)) for c in orders))
                        for key, doc in latest.items()
                        for v in {scalar(m) for m in (doc.get(f) or []) if m is not None}
                    ],
                )
        return len(docs)

    def delete(self, collection: str, key: Any) -> bool:
        spec = self._table(collection)
        with self._write() as conn:
            gone = conn.execute(f'DELETE FROM "{spec.name}" WHERE k = ?', (key,)).rowcount
            for f in spec.multi:
                conn.execute(f"DELETE FROM {side_table(spec, f)} WHERE k = ?", (key,))
        return gone > 0

    def _quarantine(self, spec: CollectionSpec, key: Any, entry: Callable[[str], Document]) -> bool:
        """Read the raw text, write the entry and delete the row and its side-table
        rows in one IMMEDIATE transaction: no reader sees the record in both places
        or in neither."""
        target = self._table(QUARANTINE)
        self._table(spec.name)
        with self._write() as conn:
            row = conn.execute(f'SELECT {DOC} FROM "{spec.name}" WHERE k = ?', (key,)).fetchone()
            if row is None:
                return False
            self._write_row(conn, target, entry(raw_text(row[0])), replace=True)
            conn.execute(f'DELETE FROM "{spec.name}" WHERE k = ?', (key,))
            for f in spec.multi:
                conn.execute(f"DELETE FROM {side_table(spec, f)} WHERE k = ?", (key,))
        return True

    # -- reads ---------------------------------------------------------------------------

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
        spec = self._table(collection)
        self.check_filter(collection, where, order)
        order = order or spec.key
        limit = max(limit, 0)
        col = "k" if order == spec.key else column(order)
        direction = "DESC" if descending else "ASC"
        cursor = None if after is None else decode_cursor(after)

        def select_table(part: Filter | None) -> tuple[str, list[Any]]:
            clauses, args = where_clauses(spec, part)
            if cursor is not None:
                clause, extra = after_clause(col, cursor[0], cursor[1], descending)
                clauses.append(clause)
                args.extend(extra)
            sql = f'SELECT k, {col} AS o, {DOC} AS d FROM "{spec.name}"'
            if clauses:
                sql += " WHERE " + " AND ".join(clauses)
            return sql + f" ORDER BY {col} {direction}, k {direction} LIMIT ?", [*args, limit + 1]

        def select(part: Filter | None) -> tuple[str, list[Any]]:
            # One member of an array ordered like the page: its side table's range.
            driver = member_driver(spec, part, order)
            if driver is None:
                return select_table(part)
            sql, args = member_page(spec, dict(part or {}), driver, order, descending, cursor)
            return sql, [*args, limit + 1]

        split = split_field(spec, where)
        if split is None:
            sql, args = select(where)
        else:
            # ``state IN (a, b)`` ordered by ``created``: one index range per value
            # (the (state, created) index gives each in order), merged, instead of
            # sorting every matching row.
            values = dict.fromkeys(where[split].values)  # type: ignore[index]
            parts = [select({**dict(where or {}), split: v}) for v in values]
            sql = " UNION ALL ".join(f"SELECT * FROM ({part})" for part, _ in parts)
            sql += f" ORDER BY 2 {direction}, 1 {direction} LIMIT ?"
            args = [a for _, part_args in parts for a in part_args] + [limit + 1]
        rows = self._conn().execute(sql, args).fetchall()
        page = Page()
        for key, _, raw in rows[:limit]:
            try:
                page.items.append(loads(raw, spec, key))
            except CorruptDocument as exc:  # one bad row must not fail the page
                report_corrupt(exc)
                page.skipped.append(exc)
        if len(rows) > limit and limit:
            # From the row, not the document: the last row may be one skipped.
            page.next = encode_cursor(rows[limit - 1][1], rows[limit - 1][0])
        return page

    def count(
        self, collection: str, where: Filter | None = None, *, group_by: str | None = None
    ) -> int | dict[Any, int]:
        spec = self._table(collection)
        self.check_filter(collection, where, group_by)
        clauses, args = where_clauses(spec, where)
        cond = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        conn = self._conn()
        if group_by is None:
            return int(
                conn.execute(f'SELECT COUNT(*) FROM "{spec.name}"{cond}', args).fetchone()[0]
            )
        # Grouped on the column alone first: with an index on it, SQLite counts the
        # index and never reads a document. The column holds true/false as 1/0, so
        # only the groups 0 and 1 are counted again with the document's JSON type,
        # which tells them apart (the groups come back as the booleans MongoDB would
        # return); only valid JSON is parsed: a corrupt row is counted by its column
        # rather than failing the count ("malformed JSON").
        col = "k" if group_by == spec.key else column(group_by)
        counts: dict[Any, int] = {}
        ambiguous = False
        for value, n in conn.execute(
            f'SELECT {col}, COUNT(*) FROM "{spec.name}"{cond} GROUP BY 1', args
        ).fetchall():
            if isinstance(value, int | float) and value in (0, 1):
                ambiguous = True
            else:
                counts[value] = counts.get(value, 0) + n
        if not ambiguous:
            return counts
        json_kind = "CASE WHEN json_valid(doc) THEN json_type(doc, ?) END"
        both = (" AND " if cond else " WHERE ") + f"{col} IN (0, 1)"
        for value, kind, n in conn.execute(
            f'SELECT {col}, {json_kind}, COUNT(*) FROM "{spec.name}"{cond}{both} GROUP BY 1, 2',
            [f'$."{group_by}"', *args],
        ).fetchall():
            value = value == 1 if kind in ("true", "false") else value
            counts[value] = counts.get(value, 0) + n
        return counts


__all__ = ["SQLiteStore", "COLLECTIONS"]
