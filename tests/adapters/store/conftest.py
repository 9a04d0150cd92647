"""The store under test, once per backend: every contract test runs on each of them.

mongomock stands in for MongoDB on one thread only (it is not atomic across
threads); the real server runs when ``MONGODB_URI`` names one, in a database of its
own that is dropped afterwards.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from pipelinejobs.adapters.store.base import Store
from pipelinejobs.adapters.store.memory import MemoryStore
from pipelinejobs.adapters.store.sqlite import SQLiteStore

#: Backends whose operations are atomic across threads (mongomock's are not).
THREAD_SAFE = {"memory", "sqlite", "mongodb"}


@pytest.fixture(
    params=["memory", "sqlite", "mongomock", pytest.param("mongodb", marks=pytest.mark.mongodb)]
)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the backend the test runs against."""
    return request.param


def _let_mongomock_take_bulk_sort(monkeypatch: pytest.MonkeyPatch, mongomock: Any) -> None:
    """pymongo >= 4.11 passes ``sort=`` (None unless asked for) to the bulk builder's
    add_replace/add_update, which mongomock 4.3 does not accept: drop it when unset,
    so ``bulk_write`` (put_many) runs on mongomock as it does on a server."""
    builder = mongomock.collection.BulkOperationBuilder
    for name in ("add_replace", "add_update"):
        original = getattr(builder, name)

        def without_sort(
            self: Any, *args: Any, sort: Any = None, _original: Any = original, **kw: Any
        ) -> Any:
            if sort is not None:
                raise NotImplementedError("mongomock cannot sort bulk operations")
            return _original(self, *args, **kw)

        monkeypatch.setattr(builder, name, without_sort)


@pytest.fixture
def store(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """A fresh, empty store of each kind, closed (or dropped) at teardown."""
    if backend == "memory":
        yield MemoryStore()
    elif backend == "sqlite":
        sqlite_store = SQLiteStore(tmp_path / "s.sqlite3")
        yield sqlite_store
        sqlite_store.close()
    elif backend == "mongomock":
        mongomock = pytest.importorskip("mongomock")
        from pipelinejobs.adapters.store.mongo import MongoStore

        _let_mongomock_take_bulk_sort(monkeypatch, mongomock)

        mock_store = MongoStore(client=mongomock.MongoClient(), database="t")
        yield mock_store
        mock_store.close()
    else:
        uri = os.environ.get("MONGODB_URI")
        if not uri:
            pytest.skip("MONGODB_URI not set: no MongoDB server on this machine")
        import pymongo

        from pipelinejobs.adapters.store.mongo import MongoStore

        database = f"pipelinejobs_test_{uuid4().hex[:8]}"
        mongo_store = MongoStore(uri, database=database)
        yield mongo_store
        mongo_store.close()
        client: pymongo.MongoClient = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
        try:
            client.drop_database(database)
        finally:
            client.close()


@pytest.fixture
def threaded_store(backend: str, store: Store) -> Store:
    """``store``, for tests that hit it from several threads at once."""
    if backend not in THREAD_SAFE:
        pytest.skip(f"{backend} is not atomic across threads; threaded tests skip it")
    return store


def _run_threads(target: Callable[[int], None], n: int, timeout: float = 60.0) -> None:
    """Run ``target(i)`` on ``n`` threads released together, join them all, and
    re-raise the first error in the test's thread (a thread's exception would
    otherwise vanish and the test pass)."""
    start = threading.Barrier(n)
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            start.wait(timeout)
            target(i)
        except BaseException as exc:  # noqa: BLE001 - re-raised below in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not [t for t in threads if t.is_alive()], f"threads still running after {timeout}s"
    if errors:
        raise errors[0]


@pytest.fixture
def run_threads() -> Callable[..., None]:
    """``run_threads(target, n)``: start n threads together, join them, re-raise."""
    return _run_threads
