"""The SQLite store's connections: one per thread and process, and its write transaction.

Connections are per thread (sqlite3 connections must not be shared) and per process
(one opened before ``fork`` is never reused, nor closed, after it: closing it in the
child could disturb the parent's locks). A thread that has ended gets its connection
closed when the next one is opened, so a server starting a thread per request does
not pile up open files. A store pickles as its path and settings, so it can be handed
to a spawned process.

Kept apart from :mod:`pipelinejobs.adapters.store.sqlite` (the documents and their operations) so
each reads as one concern.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipelinejobs.errors import StoreUnavailable


class SQLiteConnections:
    """The connections to one SQLite file, for the store built on them."""

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0, cache_kib: int = 512
    ) -> None:
        self.path = Path(path)
        self.busy_timeout = busy_timeout
        #: Page cache per connection (KiB). Connections are per thread, so a gateway of
        #: N threads holds N caches; SQLite's default (2 MiB each) filled slowly as the
        #: file grew and read as growth in a soak (+12% over 8 minutes in a gateway of 8
        #: threads, +1% with 256 KiB). Pages missed are read back from the OS's cache.
        self.cache_kib = cache_kib
        self._local = threading.local()
        self._conns_lock = threading.Lock()
        self._open: list[tuple[threading.Thread, int, sqlite3.Connection]] = []
        self._writer, self._writer_pid = threading.Lock(), os.getpid()

    def __reduce__(self) -> tuple[Any, ...]:
        # Connections and locks are per process; a copy makes its own on first use.
        return (
            type(self),
            (self.path,),
            {"busy_timeout": self.busy_timeout, "cache_kib": self.cache_kib},
        )

    # -- connections ---------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            return conn
        self.path.parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn = self._open_connection()
                break
            except sqlite3.OperationalError as exc:
                # Setting WAL mode (and a WAL file's recovery) can answer "database is
                # locked" at once, without SQLite's busy handler, while another process
                # opens the same file: wait for it as busy_timeout would.
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc
                time.sleep(0.01)
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

    def _open_connection(self) -> sqlite3.Connection:
        # Each connection is used by the one thread that opened it; the flag only lets
        # close() release every thread's connection.
        conn = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA wal_autocheckpoint=10000")
            conn.execute(f"PRAGMA cache_size=-{int(self.cache_kib)}")
        except sqlite3.Error:
            conn.close()
            raise
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
