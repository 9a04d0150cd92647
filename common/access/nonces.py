"""Nonces (Abaco semantics): single-purpose credentials in a URL.

A nonce lets a compute backend call back without holding a user's key: it is
created on one actor, with a level (READ < EXECUTE < UPDATE), a number of uses
(``maxUses``, -1 for unlimited) and optionally an expiry, and is presented as
``?x-nonce=<id>``. Only its SHA-256 is stored. Each use is one compare-and-set that
decrements the remaining uses, so two concurrent last uses cannot both succeed.

Abaco lists a nonce's id to whoever may use it, so a lost id can be read again. Here
the id is not stored, but derived: with a server secret (``tokens.secret``), a nonce's
id is an HMAC of a random ``seed`` kept on its record, and :meth:`Nonces.reveal`
makes it again for its owner. A copy of the database alone holds no usable id (the
seed without the secret), and the secret alone names none (no seed). Nonces made
without a secret (the launcher-proxy's callback nonces, owned by no key) have a
random id that is shown once.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Callable
from typing import Any

from pipelinejobs import signals
from pipelinejobs.access.keys import Principal, digest, owner_label
from pipelinejobs.adapters.store.base import QUARANTINE, Document, Store, not_found
from pipelinejobs.adapters.store.cas import DEFAULT_RETRIES, Change, compare_and_set
from pipelinejobs.adapters.store.codec import set_aside
from pipelinejobs.domain.clock import Clock, iso, now, parse, system_clock
from pipelinejobs.errors import (
    CorruptDocument,
    InvalidCredential,
    NotFound,
    PermissionDenied,
    PipelineJobsError,
    ValidationError,
)

LEVELS = ("READ", "EXECUTE", "UPDATE")
PREFIX = "PJ_"
#: Most uses a nonce may have (beyond: -1, unlimited).
MAX_USES = 1_000_000_000
#: Longest lifetime of a nonce, in seconds: ten years of 365.25 days.
MAX_LIFETIME = 315_576_000
MAX_DESCRIPTION = 1024
#: How a nonce is named in a URL: the listed id (a prefix of its hash, 12 hex
#: characters or more) or the id itself (``PJ_`` and 24 URL-safe characters).
ID_FORM = re.compile(r"[0-9a-f]{12,64}|" + PREFIX + r"[A-Za-z0-9_-]{24}")


def check_request(level: Any, max_uses: Any, description: Any, expires_in: Any) -> None:
    """Refuse (400, naming the field) what no nonce can be: the bounds of
    schemas/nonce_request.json, checked again here for callers that are not the
    gateway. A lifetime is bounded so the expiry stays a date the clock can write."""
    if level not in LEVELS:
        raise ValidationError(
            f"level must be one of {', '.join(LEVELS)}, not {level!r}",
            path="level",
            allowed=list(LEVELS),
        )
    if (
        isinstance(max_uses, bool)
        or not isinstance(max_uses, int)
        or not (max_uses == -1 or 1 <= max_uses <= MAX_USES)
    ):
        raise ValidationError(
            f"maxUses must be -1 (unlimited) or an integer from 1 to {MAX_USES}, not {max_uses!r}",
            path="maxUses",
        )
    if expires_in is not None and (
        isinstance(expires_in, bool)
        or not isinstance(expires_in, int | float)
        or not 0 < expires_in <= MAX_LIFETIME
    ):
        raise ValidationError(
            f"expiresIn must be a number of seconds above 0 and at most {MAX_LIFETIME} "
            f"(ten years), not {expires_in!r}",
            path="expiresIn",
        )
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise ValidationError(
            f"description must be a string of at most {MAX_DESCRIPTION} characters",
            path="description",
        )


def level_rank(level: str) -> int:
    return LEVELS.index(level)


def public(doc: Document, shown_id: str | None = None) -> dict[str, Any]:
    """A nonce as the API lists it, in Abaco's fields: its ``id`` is ``shown_id`` (the
    usable id, for its owner) or else the first 12 characters of its hash; unlimited
    uses are -1 and the owner is named whole (:func:`~pipelinejobs.access.keys.owner_label`),
    as Abaco shows them. The hash itself stays internal."""
    return {
        "id": shown_id or doc["id"][:12],
        "actorId": doc["actor"],
        "level": doc["level"],
        "maxUses": doc["max_uses"],
        "remainingUses": doc["remaining_uses"],
        "description": doc.get("description", ""),
        "owner": owner_label(str(doc["owner"])),
        "createTime": doc["created"],
        "expires": doc.get("expires"),
    }


def _derived(secret: str, seed: str) -> str:
    """The nonce id derived from ``seed`` under ``secret`` (``PJ_`` and 24 URL-safe
    characters: 144 bits, like a random one)."""
    mac = hmac.new(secret.encode(), f"pipelinejobs:nonce:{seed}".encode(), hashlib.sha256)
    return PREFIX + base64.urlsafe_b64encode(mac.digest()).decode()[:24]


class Nonces:
    """Create, redeem, list and delete nonces."""

    collection = "nonces"

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = system_clock,
        retries: int = DEFAULT_RETRIES,
        secret: str = "",
    ) -> None:
        self.store = store
        self.clock = clock
        #: Compare-and-set budget (``store.cas_retries``), shared with every other loop.
        self.retries = retries
        #: What ids are derived with (``tokens.secret``); empty: random ids, shown once.
        self._secret = secret

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
        """A new nonce on ``actor``: (its id; the stored record)."""
        check_request(level, max_uses, description, expires_in)
        expires = None if expires_in is None else iso(self.clock() + float(expires_in))
        seed = secrets.token_urlsafe(18) if self._secret else None
        secret = _derived(self._secret, seed) if seed else PREFIX + secrets.token_urlsafe(18)
        doc: Document = {
            "id": digest(secret),
            "actor": actor,
            "level": level,
            "max_uses": max_uses,
            "remaining_uses": max_uses,
            "description": description,
            "owner": owner.owner,
            "role": owner.role,
            "created": now(self.clock),
            "expires": expires,
        }
        if seed:
            doc["seed"] = seed
        return secret, self.store.insert(self.collection, doc)

    def reveal(self, doc: Document) -> str | None:
        """The usable id of nonce ``doc`` when it was derived under this secret (see the
        module docstring), else None. Callers show it only to the nonce's owner."""
        seed = doc.get("seed")
        if not self._secret or not isinstance(seed, str) or not seed:
            return None
        secret = _derived(self._secret, seed)
        return secret if hmac.compare_digest(digest(secret), str(doc["id"])) else None

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
        PermissionDenied (403) when it is for another actor or too low a level;
        TooManyConflicts (503, retry) when concurrent uses kept winning the race.
        ``check_owner`` is called with the owner's key id before a use is spent and
        raises if the owner may no longer act (a revoked key). Every check is made on
        the version the spend replaces, so a use that loses a race is checked again.
        Each try is announced as :data:`pipelinejobs.signals.nonce_redeemed`.
        """
        nonce_id = digest(secret)
        principal: list[Principal] = []

        def spend(doc: Document) -> Change | None:
            principal.clear()
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
            principal.append(
                Principal(
                    "nonce",
                    doc["id"],
                    doc.get("role", "user"),
                    doc["owner"],
                    (actor,),
                    doc["level"],
                )
            )
            return None if remaining == -1 else Change(set={"remaining_uses": remaining - 1})

        try:
            try:
                compare_and_set(
                    self.store,
                    self.collection,
                    nonce_id,
                    spend,
                    retries=self.retries,
                    current=self._stored(nonce_id),
                    what="the nonce",
                )
            except (NotFound, CorruptDocument) as exc:  # gone or spoilt after a lost race
                raise self._unusable(nonce_id, exc) from exc
        except PipelineJobsError as exc:
            signals.nonce_redeemed.send(actor=actor, outcome=type(exc).__name__)
            raise
        signals.nonce_redeemed.send(actor=actor, outcome="redeemed")
        return principal[0]

    def _stored(self, nonce_id: str) -> Document:
        """The nonce to redeem; InvalidCredential (401) saying why when there is none."""
        try:
            doc = self.store.get(self.collection, nonce_id)
        except CorruptDocument as exc:
            raise self._unusable(nonce_id, exc) from exc
        if doc is None:
            raise self._unusable(nonce_id, None)
        return doc

    def _unusable(self, nonce_id: str, exc: NotFound | CorruptDocument | None) -> InvalidCredential:
        """Why the nonce ``nonce_id`` cannot be used, as a 401.

        A corrupt one can never be used: it is set aside here, where it is first met
        on a write path, so the credential fails with a reason instead of a 500 on every
        request presenting it; one set aside earlier is named as quarantined."""
        if isinstance(exc, CorruptDocument):
            set_aside(self.store, exc)
            return InvalidCredential(
                f"the nonce cannot be used: its record was corrupt ({exc.reason}) and was "
                f"moved to the quarantine"
            )
        message = "the nonce is not known (wrong, or deleted)"
        return InvalidCredential(not_found(self.store, self.collection, nonce_id, message).message)

    def refund(self, nonce_id: str) -> None:
        """Give back the use a request spent, when the request was then refused as
        malformed or could not be carried out (nothing of it was written, so it should
        cost nothing either). One compare-and-set like the spend, so exactly one use
        comes back; an unlimited or deleted nonce is left alone. TooManyConflicts when
        concurrent uses kept winning: the use stays spent, and the caller is told so."""

        def give_back(doc: Document) -> Change | None:
            if doc["remaining_uses"] == -1:
                return None
            return Change(set={"remaining_uses": int(doc["remaining_uses"]) + 1})

        try:
            compare_and_set(
                self.store,
                self.collection,
                nonce_id,
                give_back,
                retries=self.retries,
                what="giving back the nonce's use",
            )
        except NotFound:
            return  # deleted meanwhile: there is no use to give back

    def list(self, actor: str) -> list[Document]:
        return self.store.find(
            self.collection, {"actor": actor}, order="created", limit=10_000
        ).items

    def find(self, actor: str, prefix: str) -> Document:
        """A nonce of ``actor`` by the id prefix the API shows (12 or more hex
        characters of its hash) or by the id itself; NotFound for anything else."""
        if not ID_FORM.fullmatch(prefix):
            raise NotFound(
                f"no nonce {prefix!r} on actor {actor}: a nonce is named by the id listed "
                f"(12 to 64 hex characters) or the id it was created with",
                nonce=prefix,
            )
        wanted = digest(prefix) if prefix.startswith(PREFIX) else prefix
        page = self.store.find(self.collection, {"actor": actor}, order="created", limit=10_000)
        matches = [n for n in page.items if n["id"].startswith(wanted)]
        if len(matches) == 1:
            return matches[0]
        message = f"no nonce {prefix!r} on actor {actor}"
        corrupt = [c for c in page.skipped if str(c.key).startswith(wanted)]
        if not matches and len(corrupt) == 1:
            raise corrupt[0]  # 500 naming the record: it is there, but cannot be read
        if not matches:
            gone = self.store.find(QUARANTINE, {"collection": self.collection}, limit=10_000)
            named = [e for e in gone.items if str(e.get("key")).startswith(wanted)]
            if len(named) == 1:
                raise not_found(self.store, self.collection, named[0]["key"], message, nonce=prefix)
        raise NotFound(message, nonce=prefix)

    def delete(self, actor: str, prefix: str) -> None:
        self.store.delete(self.collection, self.find(actor, prefix)["id"])
