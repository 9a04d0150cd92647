"""Console sessions: what is stored, how they end."""

from __future__ import annotations

import json

import pytest

from pipelinejobs.access.keys import Keys, digest
from pipelinejobs.access.sessions import PURGE_BATCH, Sessions
from pipelinejobs.adapters.store.memory import MemoryStore
from pipelinejobs.errors import InvalidCredential
from tests.support import FakeClock


@pytest.fixture
def parts() -> tuple[Sessions, Keys, FakeClock]:
    store, clock = MemoryStore(), FakeClock()
    keys = Keys(store, clock=clock)
    return Sessions(store, keys, ttl=600, clock=clock), keys, clock


def test_a_session_stores_hashes_only(parts: tuple[Sessions, Keys, FakeClock]) -> None:
    sessions, keys, _ = parts
    key, _ = keys.create("user", actors=["jobs-manager"])
    secret, opened = sessions.open(key)
    stored = sessions.store.get("sessions", digest(secret))
    assert stored is not None
    text = json.dumps(stored)
    assert key not in text and secret not in text
    assert stored["key_id"] == digest(key) and stored["role"] == "user"
    found = sessions.resolve(secret)
    assert found.principal.actors == ("jobs-manager",) and found.csrf == opened.csrf
    assert Sessions.csrf_matches(found, opened.csrf)
    assert not Sessions.csrf_matches(found, "") and not Sessions.csrf_matches(found, "x")


def test_unknown_expired_revoked_and_closed_sessions_fail(
    parts: tuple[Sessions, Keys, FakeClock],
) -> None:
    sessions, keys, clock = parts
    key, _ = keys.create("admin")
    with pytest.raises(InvalidCredential):
        sessions.open("f" * 32)
    with pytest.raises(InvalidCredential):
        sessions.resolve("")
    with pytest.raises(InvalidCredential):
        sessions.resolve("not-a-session")
    secret, _ = sessions.open(key)
    clock.advance(601)
    with pytest.raises(InvalidCredential, match="expired"):
        sessions.resolve(secret)
    assert sessions.store.count("sessions") == 0
    secret, _ = sessions.open(key)
    keys.revoke(digest(key))
    with pytest.raises(InvalidCredential, match="revoked"):
        sessions.resolve(secret)
    other, _ = keys.create("admin")
    secret, _ = sessions.open(other)
    assert sessions.close(secret) and not sessions.close(secret)
    with pytest.raises(InvalidCredential):
        sessions.resolve(secret)


def test_expired_sessions_are_purged_a_batch_at_a_time(
    parts: tuple[Sessions, Keys, FakeClock],
) -> None:
    sessions, keys, clock = parts
    key, _ = keys.create("user")
    for _ in range(PURGE_BATCH + 5):
        sessions.open(key)
    clock.advance(601)
    sessions.open(key)  # purges one batch
    assert sessions.store.count("sessions") == 6
    assert sessions.purge() == 5
