"""The document store: one interface (:class:`Store`), three backends.

:func:`open_store` picks the backend from the configuration; nothing connects
until the first operation.
"""

from __future__ import annotations

from pipelinejobs.adapters.store.base import (
    COLLECTIONS,
    CollectionSpec,
    Document,
    In,
    Page,
    Range,
    Store,
)
from pipelinejobs.config import Config

__all__ = [
    "COLLECTIONS",
    "CollectionSpec",
    "Document",
    "In",
    "Page",
    "Range",
    "Store",
    "open_store",
]


def open_store(config: Config) -> Store:
    """The store ``config`` names: sqlite (default), mongodb or memory."""
    backend = config.store.backend
    if backend == "sqlite":
        from pipelinejobs.adapters.store.sqlite import SQLiteStore

        return SQLiteStore(
            config.sqlite_path,
            busy_timeout=config.store.sqlite_busy_timeout,
            cache_kib=config.store.sqlite_cache_kib,
        )
    if backend == "mongodb":
        from pipelinejobs.adapters.store.mongo import MongoStore

        return MongoStore(config.store.mongodb_uri, config.store.mongodb_database)
    from pipelinejobs.adapters.store.memory import MemoryStore

    return MemoryStore()
