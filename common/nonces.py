"""Nonces (Abaco semantics): single-purpose credentials in a URL.

A nonce lets a compute backend call back without holding a user's key: it is
created on one actor, with a level (READ < EXECUTE < UPDATE), a number of uses
(``maxUses``, -1 for unlimited) and optionally an expiry, and is presented as
``?x-nonce=<id>``. The id is shown once; only its SHA-256 is stored. Each use is one
compare-and-set that decrements the remaining uses, so two concurrent last uses
cannot both succeed.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

from common.clock import Clock, iso, now, parse, system_clock
from common.errors import InvalidCredential, NotFound, PermissionDenied, ValidationError
from common.keys import Principal, digest
from common.store.base import Document, Store

LEVELS = ("READ", "EXECUTE", "UPDATE")
PREFIX = "PJ_"


def level_rank(level: str) -> int:
    return LEVELS.index(level)


def public(doc: Document) -> dict[str, Any]:
    """A nonce as the API lists it: no secret (the id hash stays internal too)."""
    return {
        "id": doc["id"][:12],
        "actorId": doc["actor"],
        "level": doc["level"],
        "maxUses": doc["max_uses"],
        "remainingUses": doc["remaining_uses"],
        "description": doc.get("description", ""),
        "owner": doc["owner"][:12],
        "createTime": doc["created"],
        "expires": doc.get("expires"),
    }


class Nonces:
    """Create, redeem, list and delete nonces."""

    collection = "nonces"

    def __init__(self, store: Store, *, clock: Clock = system_clock) -> None:
        self.store = store
        self.clock = clock

    def create(
        self,
        actor: str,
        owner: Principal,
        *,
        level: str = "EXECUTE",
        max_uses: Any = -1,
        description: str = "",
        expires_in: Any = None,
    ) -> tuple[str, Document]:
        """A new nonce on ``actor``: (the id, shown only now; the stored record)."""
        if level not in LEVELS:
            raise ValidationError(
                f"level must be one of {', '.join(LEVELS)}, not {level!r}",
                path="level",
                allowed=list(LEVELS),
            )
        if (
            isinstance(max_uses, bool)
            or not isinstance(max_uses, int)
            or (max_uses == 0 or max_uses < -1)
        ):
            raise ValidationError(
                f"maxUses must be -1 (unlimited) or a positive integer, not {max_uses!r}",
                path="maxUses",
            )
        expires = None
        if expires_in is not None:
            if (
                isinstance(expires_in, bool)
                or not isinstance(expires_in, int | float)
                or (expires_in <= 0)
            ):
                raise ValidationError(
                    "expiresIn must be a positive number of seconds", path="expiresIn"
                )
            expires = iso(self.clock() + float(expires_in))
        secret = PREFIX + secrets.token_urlsafe(18)
        doc = {
            "id": digest(secret),
            "actor": actor,
            "level": level,
            "max_uses": max_uses,
            "remaining_uses": max_uses,
            "description": str(description),
            "owner": owner.owner,
            "role": owner.role,
            "created": now(self.clock),
            "expires": expires,
        }
        return secret, self.store.insert(self.collection, doc)

    def redeem(
        self,
        secret: str,
        actor: str,
        needed: str,
        *,
        check_owner: Callable[[str], None] | None = None,
    ) -> Principal:
        """Use a nonce once for a request to ``actor`` needing level ``needed``.

        InvalidCredential (401) when it does not exist, is used up or expired;
        PermissionDenied (403) when it is for another actor or too low a level.
        ``check_owner`` is called with the owner's key id before a use is spent and
        raises if the owner may no longer act (a revoked key).
        """
        nonce_id = digest(secret)
        for _ in range(1000):
            doc = self.store.get(self.collection, nonce_id)
            if doc is None:
                raise InvalidCredential("the nonce is not known (wrong, or deleted)")
            if doc["actor"] != actor:
                raise PermissionDenied(f"the nonce is for actor {doc['actor']}, not {actor}")
            if level_rank(doc["level"]) < level_rank(needed):
                raise PermissionDenied(
                    f"the nonce's level {doc['level']} does not allow this ({needed} needed)"
                )
            if doc.get("expires") and parse(doc["expires"]) <= self.clock():
                raise InvalidCredential(f"the nonce expired at {doc['expires']}")
            remaining = doc["remaining_uses"]
            if remaining == 0:
                raise InvalidCredential("the nonce has no uses left")
            if check_owner is not None:
                check_owner(doc["owner"])
            principal = Principal(
                "nonce", doc["id"], doc.get("role", "user"), doc["owner"], (actor,), doc["level"]
            )
            if remaining == -1:
                return principal
            if (
                self.store.update(
                    self.collection,
                    nonce_id,
                    version=doc["version"],
                    set={"remaining_uses": remaining - 1},
                )
                is not None
            ):
                return principal
        raise InvalidCredential("the nonce is too contended to use; try again")

    def refund(self, nonce_id: str) -> None:
        """Give back the use a request spent, when the request was then refused as
        malformed (bad input changes nothing, so it should cost nothing either). A
        compare-and-set like the spend; an unlimited or deleted nonce is left alone."""
        for _ in range(1000):
            doc = self.store.get(self.collection, nonce_id)
            if doc is None or doc["remaining_uses"] == -1:
                return
            uses = int(doc["remaining_uses"]) + 1
            if self.store.update(
                self.collection, nonce_id, version=doc["version"], set={"remaining_uses": uses}
            ):
                return

    def list(self, actor: str) -> list[Document]:
        return self.store.find(
            self.collection, {"actor": actor}, order="created", limit=10_000
        ).items

    def find(self, actor: str, prefix: str) -> Document:
        """A nonce of ``actor`` by the id prefix the API shows (or the full id)."""
        wanted = digest(prefix) if prefix.startswith(PREFIX) else prefix
        matches = [n for n in self.list(actor) if n["id"].startswith(wanted)] if wanted else []
        if len(matches) != 1:
            raise NotFound(f"no nonce {prefix!r} on actor {actor}", nonce=prefix)
        return matches[0]

    def delete(self, actor: str, prefix: str) -> None:
        self.store.delete(self.collection, self.find(actor, prefix)["id"])
