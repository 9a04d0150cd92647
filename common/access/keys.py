"""Bearer keys: who is calling the HTTP gateway.

A key is 32 hex characters shown once, when it is created; only its SHA-256 is
stored, so a copy of the database does not hand out credentials. Each key has a
role — ``admin`` (everything, including key management) or ``user`` — and
optionally the list of actors it may post to (empty: all of them).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from pipelinejobs.adapters.store.base import Document, Store
from pipelinejobs.adapters.store.cas import DEFAULT_RETRIES, Change, compare_and_set
from pipelinejobs.domain.clock import Clock, now, system_clock
from pipelinejobs.errors import InvalidCredential, NotFound, ValidationError

ADMIN, USER = "admin", "user"
ROLES = (ADMIN, USER)
#: Owner of the nonces the system mints for itself (a launched job's callback URL):
#: no key stands behind them, so no revocation ends them — they expire or run out.
SYSTEM_OWNER = "system:launcher-proxy"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """An authenticated caller."""

    kind: str  #: "key" or "nonce"
    id: str  #: the key's or nonce's stored id (a hash, never the secret)
    role: str  #: "admin" or "user" (a nonce acts with its owner's role)
    owner: str  #: the key id that owns the request (a nonce's creator)
    actors: tuple[str, ...] = ()  #: actors it may post to; empty = all
    level: str = "UPDATE"  #: a nonce's level; keys act at UPDATE

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN

    @property
    def sends_as(self) -> str:
        """The role a message it sends carries (``Runtime.submit``'s ``role``): a key's
        own; never admin for a nonce, which is a single-purpose credential handed to
        scripts and compute backends, so one cannot register what runs."""
        return ADMIN if self.kind == "key" and self.is_admin else USER

    def may_post(self, alias: str) -> bool:
        return self.is_admin or not self.actors or alias in self.actors


class Keys:
    """Create, check, list and revoke bearer keys."""

    collection = "keys"

    def __init__(
        self, store: Store, *, clock: Clock = system_clock, retries: int = DEFAULT_RETRIES
    ) -> None:
        self.store = store
        self.clock = clock
        #: Compare-and-set budget (``store.cas_retries``), shared with every other loop.
        self.retries = retries

    def create(
        self, role: str, *, description: str = "", actors: Iterable[str] = ()
    ) -> tuple[str, Document]:
        """A new key: (the secret, shown only now; the stored record)."""
        if role not in ROLES:
            raise ValidationError(
                f"role must be one of {', '.join(ROLES)}, not {role!r}",
                path="role",
                allowed=list(ROLES),
            )
        secret = secrets.token_hex(16)
        doc = {
            "id": digest(secret),
            "role": role,
            "description": description,
            "actors": sorted(set(actors)),
            "created": now(self.clock),
            "revoked": False,
        }
        return secret, self.store.insert(self.collection, doc)

    def authenticate(self, secret: str) -> Principal:
        """The principal for a presented key; InvalidCredential if unknown or revoked."""
        key_id = digest(secret)
        doc = self.store.get(self.collection, key_id)
        if doc is None or not hmac.compare_digest(doc["id"], key_id):
            raise InvalidCredential("the bearer key is not known")
        if doc.get("revoked"):
            raise InvalidCredential("the bearer key was revoked")
        return Principal("key", doc["id"], doc["role"], doc["id"], tuple(doc.get("actors") or ()))

    def require_active(self, key_id: str) -> None:
        """InvalidCredential unless the key stored as ``key_id`` exists and is not revoked.

        A nonce acts for the key that created it, so revoking a key must also end its
        nonces: otherwise a callback URL handed out with it would outlive it.
        """
        if key_id == SYSTEM_OWNER:
            return
        doc = self.store.get(self.collection, key_id)
        if doc is None or doc.get("revoked"):
            raise InvalidCredential("the key that created this nonce was revoked")

    def list(self) -> list[Document]:
        return self.store.find(self.collection, order="created", limit=10_000).items

    def find(self, prefix: str) -> Document:
        """A key by (a prefix of) its id, as ``keys list`` shows it."""
        matches = [k for k in self.list() if k["id"].startswith(prefix)] if prefix else []
        if len(matches) != 1:
            raise NotFound(
                f"{'no' if not matches else 'more than one'} key with id {prefix!r}", key=prefix
            )
        return matches[0]

    def revoke(self, prefix: str) -> Document:
        """Revoke the key ``prefix`` names (for good: nothing un-revokes it); the record.
        A compare-and-set, so it is not lost to a concurrent write of the same record;
        one already revoked is returned as it is."""
        doc = self.find(prefix)
        return compare_and_set(
            self.store,
            self.collection,
            doc["id"],
            lambda current: None if current.get("revoked") else Change(set={"revoked": True}),
            retries=self.retries,
            current=doc,
            what=f"key {doc['id'][:12]}",
        )

    def count_active(self, role: str | None = None) -> int:
        where: dict[str, Any] = {"role": role} if role else {}
        return sum(
            1
            for k in self.store.find(self.collection, where, limit=10_000).items
            if not k.get("revoked")
        )
