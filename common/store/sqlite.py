"""SQLite store: the embedded default, one file under the data directory.

Each collection is a table holding the JSON document, its version, and one indexed
column per filterable field; array fields that can be filtered on by member
(``child_of``) get a side table. The file runs in WAL mode, so readers never block
the writer, and every write is a ``BEGIN IMMEDIATE`` transaction: the version
check, the new document and its index rows commit together or not at all. That
makes ``update`` a real compare-and-set across threads *and* processes sharing the
file; ``busy_timeout`` makes a writer wait for another process's lock instead of
failing.

Connections are per thread (sqlite3 connections must not be shared) and per process
(one opened before ``fork`` is never reused, nor closed, after it: closing it in the
child could disturb the parent's locks). A thread that has ended gets its connection
closed when the next one is opened, so a server starting a thread per request does
not pile up open files. Tables are created on first use, not at import. A store
pickles as its path and settings, so it can be handed to a spawned process.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from common.errors import DuplicateDocument, NotFound, StoreUnavailable
from common.store.base import (
    COLLECTIONS,
    CollectionSpec,
    Document,
    Filter,
    Page,
    Store,
    decode_cursor,
    encode_cursor,
)
from common.store.sqlite_query import (
    after_clause,
    column,
    dumps,
    scalar,
    schema_statements,
    side_table,
    update_statement,
    where_clauses,
)


class SQLiteStore(Store):
    """Documents in one SQLite file; safe for many threads and several processes."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._ready: set[str] = set()
        self._ready_lock = threading.Lock()
        # Its own lock: _create holds _ready_lock while it opens a connection.
        self._conns_lock = threading.Lock()
        self._open: list[tuple[threading.Thread, int, sqlite3.Connection]] = []
        self._writer, self._writer_pid = threading.Lock(), os.getpid()

    def __reduce__(self) -> tuple[Any, ...]:
        # Connections and locks are per process; a copy makes its own on first use.
        return (type(self), (self.path,), {"busy_timeout": self.busy_timeout})

    # -- connections ---------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            # Each connection is used by the one thread that opened it; the flag only
            # lets close() release every thread's connection.
            conn = sqlite3.connect(
                self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint=10000")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc
        self._local.conn, self._local.pid = conn, os.getpid()
        with self._conns_lock:
            ended = [c for t, pid, c in self._open if pid == os.getpid() and not t.is_alive()]
            self._open = [e for e in self._open if e[2] not in ended]
            self._open.append((threading.current_thread(), os.getpid(), conn))
        for old in ended:
            old.close()
        return conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One IMMEDIATE transaction: takes the write lock up front, so the reads inside
        it see exactly what the writes will replace.

        Threads of one process queue on a Python lock first: SQLite's own busy handler
        makes a waiting writer sleep in growing steps (up to 100 ms), which under
        contention costs far more than the transactions themselves. Other processes
        still wait on SQLite's lock (``busy_timeout``).
        """
        conn = self._conn()
        with self._process_write_lock():
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                raise StoreUnavailable(f"SQLite store {self.path} is locked: {exc}") from exc
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            else:
                try:
                    conn.execute("COMMIT")
                except sqlite3.Error as exc:
                    conn.execute("ROLLBACK")
                    raise StoreUnavailable(f"SQLite commit failed: {exc}") from exc

    def _process_write_lock(self) -> threading.Lock:
        """This process's writer lock (a fresh one after fork: a copied lock may be held)."""
        if self._writer_pid != os.getpid():
            self._writer, self._writer_pid = threading.Lock(), os.getpid()
        return self._writer

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
            for sql in schema_statements(spec):
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
        values = [key, doc["version"], dumps(doc), *(scalar(doc.get(f)) for f in spec.indexed)]
        cols = ", ".join(["k", "version", "doc", *(column(f) for f in spec.indexed)])
        marks = ", ".join("?" * len(values))
        verb = "INSERT OR REPLACE" if replace else "INSERT"
        conn.execute(f'{verb} INTO "{spec.name}" ({cols}) VALUES ({marks})', values)
        for f in spec.multi if multi_changed is None else multi_changed:
            conn.execute(f"DELETE FROM {side_table(spec, f)} WHERE k = ?", (key,))
            members = {scalar(v) for v in (doc.get(f) or []) if v is not None}
            conn.executemany(
                f"INSERT INTO {side_table(spec, f)} (v, k) VALUES (?, ?)",
                [(v, key) for v in members],
            )

    def insert(self, collection: str, doc: Document) -> Document:
        spec = self._table(collection)
        self.key_of(collection, doc)
        stored = {**doc, "version": 0}
        try:
            with self._write() as conn:
                self._write_row(conn, spec, stored, replace=False)
        except sqlite3.IntegrityError as exc:
            key = doc[spec.key]
            raise DuplicateDocument(f"{collection} {key} already exists", key=key) from exc
        return json.loads(dumps(stored))

    def get(self, collection: str, key: Any) -> Document | None:
        spec = self._table(collection)
        row = self._conn().execute(f'SELECT doc FROM "{spec.name}" WHERE k = ?', (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def update(
        self,
        collection: str,
        key: Any,
        *,
        version: int,
        set: Mapping[str, Any] | None = None,
        push: Mapping[str, Sequence[Any]] | None = None,
    ) -> Document | None:
        """The compare-and-set as one ``UPDATE ... WHERE version = ? RETURNING doc``.

        The new document is made by SQLite's JSON functions (``json_set`` for the set
        fields, ``json_insert`` at ``[#]`` for the pushed items), so the stored document
        is never decoded and re-encoded in Python, and only the indexes of columns that
        change are touched. A single statement is atomic; no transaction is needed.
        """
        self.check_change(collection, set, push)
        spec = self._table(collection)
        fields = dict(set or {})
        items = {name: list(values) for name, values in (push or {}).items()}
        if any(f in spec.multi for f in (*fields, *items)):
            return self._update_rewriting(spec, key, version, fields, items)
        sql, args = update_statement(spec, key, version, fields, items)
        with self._process_write_lock():
            row = self._conn().execute(sql, args).fetchone()
            if row is None:
                exists = (
                    self._conn()
                    .execute(f'SELECT 1 FROM "{spec.name}" WHERE k = ?', (key,))
                    .fetchone()
                )
                if exists is None:
                    raise NotFound(f"no {collection} document {key}", key=key)
                return None
        return json.loads(row[0])

    def _update_rewriting(
        self,
        spec: CollectionSpec,
        key: Any,
        version: int,
        set: dict[str, Any],
        push: dict[str, list[Any]],
    ) -> Document | None:
        """The compare-and-set for changes to array fields with side tables: read,
        change and rewrite the row and its side-table rows in one transaction."""
        with self._write() as conn:
            row = conn.execute(
                f'SELECT version, doc FROM "{spec.name}" WHERE k = ?', (key,)
            ).fetchone()
            if row is None:
                raise NotFound(f"no {spec.name} document {key}", key=key)
            if row[0] != version:
                return None
            doc = json.loads(row[1])
            doc.update(json.loads(dumps(set)))
            for name, items in push.items():
                doc[name] = list(doc.get(name) or []) + json.loads(dumps(items))
            doc["version"] = version + 1
            touched = [f for f in spec.multi if f in set or f in push]
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
                    [key, doc["version"], dumps(doc), *(scalar(doc.get(f)) for f in spec.indexed)]
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
                conn.executemany(
                    f"INSERT INTO {side_table(spec, f)} (v, k) VALUES (?, ?)",
                    [
                        (v, key)
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
        clauses, args = where_clauses(spec, where)
        col = "k" if order == spec.key else column(order)
        direction = "DESC" if descending else "ASC"
        if after is not None:
            value, key = decode_cursor(after)
            clause, extra = after_clause(col, value, key, descending)
            clauses.append(clause)
            args.extend(extra)
        sql = f'SELECT doc FROM "{spec.name}"'
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += f" ORDER BY {col} {direction}, k {direction} LIMIT ?"
        rows = self._conn().execute(sql, [*args, limit + 1]).fetchall()
        docs = [json.loads(r[0]) for r in rows[:limit]]
        nxt = None
        if len(rows) > limit and docs:
            nxt = encode_cursor(docs[-1].get(order), docs[-1][spec.key])
        return Page(docs, nxt)

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
        # The column holds true/false as 1/0; the document's JSON type tells them
        # apart, so the groups come back as the booleans MongoDB would return.
        col = "k" if group_by == spec.key else column(group_by)
        rows = conn.execute(
            f'SELECT {col}, json_type(doc, ?), COUNT(*) FROM "{spec.name}"{cond} GROUP BY 1, 2',
            [f'$."{group_by}"', *args],
        ).fetchall()
        counts: dict[Any, int] = {}
        for value, kind, n in rows:
            value = value == 1 if kind in ("true", "false") else value
            counts[value] = counts.get(value, 0) + n
        return counts

    def ping(self) -> None:
        try:
            self._conn().execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"SQLite store {self.path} is not usable: {exc}") from exc

    def close(self) -> None:
        """Close every connection this process opened (call when no thread uses it).
        Ones inherited through ``fork`` stay referenced and untouched: they are the
        parent's, and even garbage-collecting them here would close them."""
        with self._conns_lock:
            conns = [c for _, pid, c in self._open if pid == os.getpid()]
            self._open = [e for e in self._open if e[1] != os.getpid()]
        for conn in conns:
            try:
                conn.close()
            except sqlite3.Error:  # pragma: no cover - closing is best effort
                pass
        self._local = threading.local()


__all__ = ["SQLiteStore", "COLLECTIONS"]
