"""Nonces: created with a level, uses and expiry; redeemed one atomic use at a time."""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest

from pipelinejobs.access.keys import Principal, digest
from pipelinejobs.access.nonces import LEVELS, PREFIX, Nonces, level_rank, public
from pipelinejobs.domain import validation
from pipelinejobs.domain.clock import iso
from pipelinejobs.errors import (
    InvalidCredential,
    NotFound,
    PermissionDenied,
    TooManyConflicts,
    ValidationError,
)

OWNER = Principal("key", "k" * 64, "user", "k" * 64, ("jobs-manager",))


@pytest.fixture
def nonces(any_store: Any, clock: Any) -> Nonces:
    return Nonces(any_store, clock=clock)


def test_create_shows_the_id_once_and_stores_its_hash(
    nonces: Nonces, any_store: Any, clock: Any
) -> None:
    secret, doc = nonces.create("jobs-manager", OWNER, max_uses=3, description="callback")

    assert secret.startswith(PREFIX) and len(secret) >= 24
    assert doc["id"] == digest(secret)
    assert doc["actor"] == "jobs-manager"
    assert (doc["level"], doc["max_uses"], doc["remaining_uses"]) == ("EXECUTE", 3, 3)
    assert (doc["owner"], doc["role"]) == (OWNER.owner, "user")
    assert doc["created"] == iso(clock()) and doc["expires"] is None
    stored = any_store.find("nonces").items
    assert stored == [doc]
    assert secret not in json.dumps(stored)
    validation.validate("nonce", stored[0])


def test_public_hides_the_secret_and_the_full_hash(nonces: Nonces) -> None:
    secret, doc = nonces.create("jobs-manager", OWNER, level="READ", expires_in=10)

    shown = public(doc)

    assert shown["id"] == doc["id"][:12]
    assert shown["owner"] == OWNER.owner[:12]
    assert (shown["level"], shown["maxUses"], shown["remainingUses"]) == ("READ", -1, -1)
    assert shown["expires"] == doc["expires"]
    text = json.dumps(shown)
    assert secret not in text and doc["id"] not in text


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"level": "ADMIN"}, "level"),
        ({"level": "read"}, "level"),
        ({"max_uses": 0}, "maxUses"),
        ({"max_uses": -2}, "maxUses"),
        ({"max_uses": 1.0}, "maxUses"),
        ({"max_uses": "3"}, "maxUses"),
        ({"max_uses": True}, "maxUses"),
        ({"max_uses": None}, "maxUses"),
        ({"expires_in": 0}, "expiresIn"),
        ({"expires_in": -5}, "expiresIn"),
        ({"expires_in": "60"}, "expiresIn"),
        ({"expires_in": False}, "expiresIn"),
    ],
)
def test_invalid_nonces_are_refused(
    nonces: Nonces, any_store: Any, fields: dict[str, Any], path: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        nonces.create("jobs-manager", OWNER, **fields)

    assert caught.value.detail["path"] == path
    assert any_store.find("nonces").items == []


@pytest.mark.parametrize("expires_in", [1, 2.5, 3600])
def test_expiry(nonces: Nonces, clock: Any, expires_in: float) -> None:
    secret, doc = nonces.create("jobs-manager", OWNER, expires_in=expires_in)
    assert doc["expires"] == iso(clock() + expires_in)

    clock.advance(expires_in - 0.5)
    nonces.redeem(secret, "jobs-manager", "EXECUTE")
    clock.advance(0.5)

    with pytest.raises(InvalidCredential, match="expired"):
        nonces.redeem(secret, "jobs-manager", "EXECUTE")


def test_each_use_is_counted_until_none_is_left(nonces: Nonces, any_store: Any) -> None:
    secret, doc = nonces.create("jobs-manager", OWNER, max_uses=3)

    for left in (2, 1, 0):
        principal = nonces.redeem(secret, "jobs-manager", "EXECUTE")
        assert any_store.get("nonces", doc["id"])["remaining_uses"] == left
        assert principal == Principal(
            "nonce", doc["id"], "user", OWNER.owner, ("jobs-manager",), "EXECUTE"
        )

    with pytest.raises(InvalidCredential, match="no uses left"):
        nonces.redeem(secret, "jobs-manager", "EXECUTE")
    assert any_store.get("nonces", doc["id"])["remaining_uses"] == 0


def test_unlimited_nonces_are_not_counted(nonces: Nonces, any_store: Any) -> None:
    secret, doc = nonces.create("jobs-manager", OWNER)

    for _ in range(5):
        nonces.redeem(secret, "jobs-manager", "READ")

    assert any_store.get("nonces", doc["id"])["remaining_uses"] == -1


def test_a_nonce_acts_with_its_owners_role(nonces: Nonces) -> None:
    admin = Principal("key", "a" * 64, "admin", "a" * 64)
    secret, _ = nonces.create("jobs-indexer", admin)

    principal = nonces.redeem(secret, "jobs-indexer", "EXECUTE")

    assert principal.is_admin and principal.kind == "nonce"
    assert principal.actors == ("jobs-indexer",)


@pytest.mark.parametrize("secret", ["PJ_unknown", "", "x" * 300])
def test_an_unknown_nonce_is_refused(nonces: Nonces, secret: str) -> None:
    nonces.create("jobs-manager", OWNER)

    with pytest.raises(InvalidCredential, match="not known"):
        nonces.redeem(secret, "jobs-manager", "READ")


def test_a_nonce_is_scoped_to_its_actor(nonces: Nonces, any_store: Any) -> None:
    secret, doc = nonces.create("jobs-manager", OWNER, max_uses=1)

    with pytest.raises(PermissionDenied, match="jobs-manager"):
        nonces.redeem(secret, "jobs-indexer", "READ")
    assert any_store.get("nonces", doc["id"])["remaining_uses"] == 1  # not spent


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("needed", LEVELS)
def test_levels(nonces: Nonces, level: str, needed: str) -> None:
    secret, _ = nonces.create("jobs-manager", OWNER, level=level)

    if level_rank(level) >= level_rank(needed):
        assert nonces.redeem(secret, "jobs-manager", needed).level == level
    else:
        with pytest.raises(PermissionDenied, match=f"{level}.*{needed}"):
            nonces.redeem(secret, "jobs-manager", needed)


def test_level_order() -> None:
    assert [level_rank(level) for level in ("READ", "EXECUTE", "UPDATE")] == [0, 1, 2]


def test_check_owner_runs_before_a_use_is_spent(nonces: Nonces, any_store: Any) -> None:
    secret, doc = nonces.create("jobs-manager", OWNER, max_uses=2)
    seen: list[str] = []

    def gone(owner: str) -> None:
        seen.append(owner)
        raise InvalidCredential("owner revoked")

    with pytest.raises(InvalidCredential, match="owner revoked"):
        nonces.redeem(secret, "jobs-manager", "READ", check_owner=gone)

    assert seen == [OWNER.owner]
    assert any_store.get("nonces", doc["id"])["remaining_uses"] == 2
    nonces.redeem(secret, "jobs-manager", "READ", check_owner=seen.append)
    assert any_store.get("nonces", doc["id"])["remaining_uses"] == 1


def test_find_list_and_delete(nonces: Nonces, clock: Any) -> None:
    first, doc1 = nonces.create("jobs-manager", OWNER)
    clock.advance(1)
    _, doc2 = nonces.create("jobs-manager", OWNER)
    nonces.create("jobs-indexer", OWNER)

    assert [n["id"] for n in nonces.list("jobs-manager")] == [doc1["id"], doc2["id"]]
    assert nonces.find("jobs-manager", doc1["id"][:12])["id"] == doc1["id"]
    assert nonces.find("jobs-manager", first)["id"] == doc1["id"]  # by the secret itself
    with pytest.raises(NotFound):
        nonces.find("jobs-indexer", doc1["id"][:12])
    with pytest.raises(NotFound):
        nonces.find("jobs-manager", "")

    nonces.delete("jobs-manager", doc1["id"][:12])

    assert [n["id"] for n in nonces.list("jobs-manager")] == [doc2["id"]]
    with pytest.raises(InvalidCredential, match="not known"):
        nonces.redeem(first, "jobs-manager", "READ")


def test_a_lost_compare_and_set_is_retried(
    nonces: Nonces, any_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another use lands between this one's read and write: it is counted, not lost."""
    secret, doc = nonces.create("jobs-manager", OWNER, max_uses=5)
    real_update = any_store.update
    interfered: list[bool] = []

    def update(collection: str, key: Any, **kwargs: Any) -> Any:
        if collection == "nonces" and not interfered:
            interfered.append(True)
            current = any_store.get("nonces", key)
            real_update(
                "nonces",
                key,
                version=current["version"],
                set={"remaining_uses": current["remaining_uses"] - 1},
            )
        return real_update(collection, key, **kwargs)

    monkeypatch.setattr(any_store, "update", update)

    nonces.redeem(secret, "jobs-manager", "EXECUTE")

    assert interfered == [True]
    assert any_store.get("nonces", doc["id"])["remaining_uses"] == 3


def test_concurrent_uses_never_exceed_max_uses(nonces: Nonces, any_store: Any) -> None:
    """Eight threads, five uses: exactly five succeed, whatever the interleaving."""
    secret, doc = nonces.create("jobs-manager", OWNER, max_uses=5)
    barrier = threading.Barrier(8, timeout=30)
    outcomes: list[str] = []
    lock = threading.Lock()

    def use() -> None:
        barrier.wait()
        try:
            nonces.redeem(secret, "jobs-manager", "EXECUTE")
            outcome = "ok"
        except InvalidCredential:
            outcome = "refused"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["ok"] * 5 + ["refused"] * 3
    assert any_store.get("nonces", doc["id"])["remaining_uses"] == 0


# -- contention past the budget, and refunds ------------------------------------------------


def always_losing(monkeypatch: pytest.MonkeyPatch, store: Any, then: Any = None) -> list[int]:
    """Make every compare-and-set on nonces lose (``then(key)`` runs first, if given)."""
    lost: list[int] = []
    real_update = store.update

    def update(collection: str, key: Any, **kwargs: Any) -> Any:
        if collection != "nonces":
            return real_update(collection, key, **kwargs)
        lost.append(kwargs["version"])
        if then is not None:
            then(key)
        return None

    monkeypatch.setattr(store, "update", update)
    return lost


def test_a_redemption_that_keeps_losing_is_retryable_and_spends_nothing(
    any_store: Any, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the budget it is TooManyConflicts (503, retry), not 401 as it was."""
    nonces = Nonces(any_store, clock=clock, retries=3)
    secret, doc = nonces.create("jobs-manager", OWNER, max_uses=2)
    lost = always_losing(monkeypatch, any_store)

    with pytest.raises(TooManyConflicts) as info:
        nonces.redeem(secret, "jobs-manager", "EXECUTE")

    assert len(lost) == 4 and info.value.detail["retry_after"] > 0
    assert any_store.get("nonces", doc["id"])["remaining_uses"] == 2


def test_a_used_up_nonce_is_still_refused_before_any_write(
    nonces: Nonces, any_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret, _ = nonces.create("jobs-manager", OWNER, max_uses=1)
    nonces.redeem(secret, "jobs-manager", "EXECUTE")
    lost = always_losing(monkeypatch, any_store)

    with pytest.raises(InvalidCredential, match="no uses left"):
        nonces.redeem(secret, "jobs-manager", "EXECUTE")
    assert lost == []


def test_a_nonce_deleted_while_its_use_lost_a_race_is_unknown(
    nonces: Nonces, any_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret, _ = nonces.create("jobs-manager", OWNER, max_uses=3)
    always_losing(monkeypatch, any_store, then=lambda key: any_store.delete("nonces", key))

    with pytest.raises(InvalidCredential, match="not known"):
        nonces.redeem(secret, "jobs-manager", "EXECUTE")


@pytest.mark.parametrize(("max_uses", "after"), [(3, 3), (-1, -1)])
def test_a_refund_gives_back_exactly_one_use(
    nonces: Nonces, any_store: Any, max_uses: int, after: int
) -> None:
    secret, doc = nonces.create("jobs-manager", OWNER, max_uses=max_uses)
    nonces.redeem(secret, "jobs-manager", "EXECUTE")

    nonces.refund(doc["id"])

    assert any_store.get("nonces", doc["id"])["remaining_uses"] == after


def test_a_refund_of_a_deleted_nonce_does_nothing(nonces: Nonces, any_store: Any) -> None:
    _, doc = nonces.create("jobs-manager", OWNER, max_uses=3)
    any_store.delete("nonces", doc["id"])

    nonces.refund(doc["id"])

    assert any_store.get("nonces", doc["id"]) is None


def test_a_refund_that_keeps_losing_says_so(
    any_store: Any, clock: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It used to give up silently, the use lost; now the caller is told to retry."""
    nonces = Nonces(any_store, clock=clock, retries=2)
    secret, doc = nonces.create("jobs-manager", OWNER, max_uses=3)
    nonces.redeem(secret, "jobs-manager", "EXECUTE")
    lost = always_losing(monkeypatch, any_store)

    with pytest.raises(TooManyConflicts, match="giving back the nonce's use"):
        nonces.refund(doc["id"])

    assert len(lost) == 3
    assert any_store.get("nonces", doc["id"])["remaining_uses"] == 2
