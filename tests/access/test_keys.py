"""Bearer keys: created once, stored hashed, checked, listed and revoked."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from pipelinejobs.access.keys import Keys, Principal, digest
from pipelinejobs.domain import validation
from pipelinejobs.domain.clock import iso
from pipelinejobs.errors import InvalidCredential, NotFound, TooManyConflicts, ValidationError


@pytest.fixture
def keys(any_store: Any, clock: Any) -> Keys:
    return Keys(any_store, clock=clock)


def test_create_shows_the_secret_once_and_stores_its_hash(
    keys: Keys, any_store: Any, clock: Any
) -> None:
    secret, doc = keys.create("user", description="ci", actors=["jobs-manager", "jobs-manager"])

    assert re.fullmatch(r"[0-9a-f]{32}", secret)
    assert doc["id"] == digest(secret) and len(doc["id"]) == 64
    assert (doc["role"], doc["description"], doc["revoked"]) == ("user", "ci", False)
    assert doc["actors"] == ["jobs-manager"]
    assert doc["created"] == iso(clock())
    stored = any_store.find("keys").items
    assert stored == [doc]
    assert secret not in json.dumps(stored)
    validation.validate("api_key", stored[0])


def test_every_key_is_different(keys: Keys) -> None:
    secrets = {keys.create("user")[0] for _ in range(20)}

    assert len(secrets) == 20


@pytest.mark.parametrize("role", ["root", "Admin", "", "nonce"])
def test_unknown_roles_are_refused(keys: Keys, any_store: Any, role: str) -> None:
    with pytest.raises(ValidationError) as caught:
        keys.create(role)

    assert caught.value.detail["path"] == "role"
    assert any_store.find("keys").items == []


@pytest.mark.parametrize("role", ["admin", "user"])
def test_authenticate_gives_the_principal(keys: Keys, role: str) -> None:
    secret, doc = keys.create(role, actors=["jobs-indexer"])

    principal = keys.authenticate(secret)

    assert principal == Principal("key", doc["id"], role, doc["id"], ("jobs-indexer",))
    assert principal.is_admin is (role == "admin")
    assert principal.level == "UPDATE"


@pytest.mark.parametrize("secret", ["", "0" * 32, "not a key", "A" * 1000])
def test_an_unknown_key_is_refused(keys: Keys, secret: str) -> None:
    keys.create("admin")

    with pytest.raises(InvalidCredential, match="not known"):
        keys.authenticate(secret)


def test_the_stored_hash_is_not_a_key(keys: Keys) -> None:
    _, doc = keys.create("admin")

    with pytest.raises(InvalidCredential):
        keys.authenticate(doc["id"])


def test_a_revocation_that_keeps_losing_is_retryable_not_404(
    any_store: Any, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = Keys(any_store, clock=clock, retries=2)
    secret, doc = keys.create("user")
    lost: list[int] = []

    def update(collection: str, key: Any, **kwargs: Any) -> None:
        lost.append(kwargs["version"])

    monkeypatch.setattr(any_store, "update", update)

    with pytest.raises(TooManyConflicts) as info:
        keys.revoke(doc["id"][:12])

    assert len(lost) == 3 and info.value.detail["retry_after"] > 0
    assert keys.authenticate(secret).role == "user"


def test_revoking_a_revoked_key_writes_nothing(keys: Keys, any_store: Any) -> None:
    _, doc = keys.create("user")
    revoked = keys.revoke(doc["id"])

    assert keys.revoke(doc["id"]) == revoked == any_store.get("keys", doc["id"])


def test_a_revoked_key_is_refused(keys: Keys) -> None:
    secret, doc = keys.create("admin")
    other, _ = keys.create("admin")

    revoked = keys.revoke(doc["id"][:10])

    assert revoked["revoked"] is True
    with pytest.raises(InvalidCredential, match="revoked"):
        keys.authenticate(secret)
    assert keys.authenticate(other).role == "admin"


def test_require_active(keys: Keys) -> None:
    _, doc = keys.create("user")
    keys.require_active(doc["id"])

    keys.revoke(doc["id"])

    with pytest.raises(InvalidCredential):
        keys.require_active(doc["id"])
    with pytest.raises(InvalidCredential):
        keys.require_active(digest("never made"))


def test_find_by_prefix(keys: Keys) -> None:
    made = [keys.create("user")[1] for _ in range(3)]

    for doc in made:
        assert keys.find(doc["id"][:12])["id"] == doc["id"]
        assert keys.find(doc["id"])["id"] == doc["id"]
    with pytest.raises(NotFound, match="no key"):
        keys.find("zzzz")
    with pytest.raises(NotFound):
        keys.find("")


def test_an_ambiguous_prefix_is_refused(keys: Keys) -> None:
    made = [keys.create("user")[1]["id"] for _ in range(40)]
    by_first = {}
    for key_id in made:
        by_first.setdefault(key_id[0], []).append(key_id)
    shared = next(p for p, ids in by_first.items() if len(ids) > 1)  # 40 keys, 16 digits

    with pytest.raises(NotFound, match="more than one"):
        keys.find(shared)
    with pytest.raises(NotFound):
        keys.revoke(shared)
    assert all(not k["revoked"] for k in keys.list())


def test_list_is_in_creation_order(keys: Keys, clock: Any) -> None:
    made = []
    for _ in range(3):
        made.append(keys.create("user")[1]["id"])
        clock.advance(1)

    assert [k["id"] for k in keys.list()] == made


def test_count_active(keys: Keys) -> None:
    keys.create("admin")
    keys.create("user")
    _, doc = keys.create("user")
    keys.revoke(doc["id"])

    assert keys.count_active() == 2
    assert keys.count_active("admin") == 1
    assert keys.count_active("user") == 1


@pytest.mark.parametrize(
    ("role", "actors", "alias", "allowed"),
    [
        ("admin", ("jobs-manager",), "jobs-indexer", True),
        ("user", (), "jobs-indexer", True),
        ("user", ("jobs-manager",), "jobs-manager", True),
        ("user", ("jobs-manager",), "jobs-indexer", False),
        ("user", ("jobs-manager", "jobs-indexer"), "pipelines-manager", False),
    ],
)
def test_may_post(role: str, actors: tuple[str, ...], alias: str, allowed: bool) -> None:
    principal = Principal("key", "k", role, "k", actors)

    assert principal.may_post(alias) is allowed
