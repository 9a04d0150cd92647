"""Console sessions: a browser signed in with a bearer key, kept on the server.

Signing in to the operator console checks a bearer key once and opens a session: a
random secret goes into the browser's cookie, and the store keeps only its SHA-256 as
the session's id, with the **key id** (itself the key's hash), the role, when it was
created, when it expires and the session's CSRF token. Neither the key nor the
cookie's secret is stored, so a copy of the database opens no session and signs in
as no one.

Every request re-reads the key by its id (:meth:`pipelinejobs.access.keys.Keys.principal_of`):
a key revoked or deleted ends its sessions at their next request, and a role changed
is the role the next request acts with. A session ends when it expires
(``gateway.session_ttl``) or its user signs out; expired records are removed as they
are met and in small batches at each sign-in.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from pipelinejobs.access.keys import Keys, Principal, digest
from pipelinejobs.adapters.store.base import Document, Range, Store
from pipelinejobs.domain.clock import Clock, iso, now, parse, system_clock
from pipelinejobs.errors import InvalidCredential, StoreError

#: Expired sessions removed per sign-in (a bounded chore, never a scan of them all).
PURGE_BATCH = 100


@dataclass(frozen=True)
class Session:
    """A signed-in browser: who it acts as, and its CSRF token."""

    id: str  #: the stored id: the SHA-256 of the cookie's secret
    principal: Principal
    csrf: str
    expires: str


class Sessions:
    """Open, resolve and close console sessions."""

    collection = "sessions"

    def __init__(self, store: Store, keys: Keys, *, ttl: float, clock: Clock = system_clock):
        self.store = store
        self.keys = keys
        self.ttl = ttl
        self.clock = clock

    def open(self, key: str) -> tuple[str, Session]:
        """Sign in with bearer key ``key``: (the cookie's secret, shown only now; the
        session). InvalidCredential, as for a bearer request, when the key is unknown
        or revoked."""
        principal = self.keys.authenticate(key)
        self.purge()
        secret = secrets.token_urlsafe(32)
        doc: Document = {
            "id": digest(secret),
            "key_id": principal.id,
            "role": principal.role,
            "created": now(self.clock),
            "expires": iso(self.clock() + self.ttl),
            "csrf": secrets.token_urlsafe(32),
        }
        self.store.insert(self.collection, doc)
        return secret, Session(doc["id"], principal, doc["csrf"], doc["expires"])

    def resolve(self, secret: str) -> Session:
        """The session whose cookie holds ``secret``; InvalidCredential when there is
        none, it expired, or its key no longer authenticates (revoked, deleted)."""
        if not secret:
            raise InvalidCredential("not signed in")
        session_id = digest(secret)
        doc = self.store.get(self.collection, session_id)
        if doc is None or not hmac.compare_digest(str(doc.get("id", "")), session_id):
            raise InvalidCredential("the session is not known (signed out, or expired)")
        if parse(str(doc["expires"])) <= self.clock():
            self.store.delete(self.collection, session_id)
            raise InvalidCredential("the session expired; sign in again")
        try:
            principal = self.keys.principal_of(str(doc["key_id"]))
        except InvalidCredential:
            self.store.delete(self.collection, session_id)
            raise
        return Session(session_id, principal, str(doc["csrf"]), str(doc["expires"]))

    def close(self, secret: str) -> bool:
        """Sign out: the session is gone at once. True if there was one."""
        return bool(secret) and self.store.delete(self.collection, digest(secret))

    def purge(self) -> int:
        """Remove up to :data:`PURGE_BATCH` expired sessions; how many went."""
        try:
            page = self.store.find(
                self.collection,
                {"expires": Range(lt=now(self.clock))},
                order="expires",
                limit=PURGE_BATCH,
            )
        except StoreError:  # a chore: it must never stop a sign-in
            return 0
        return sum(1 for doc in page.items if self.store.delete(self.collection, doc["id"]))

    @staticmethod
    def csrf_matches(session: Session, token: str | None) -> bool:
        """Whether a form's CSRF token is the session's (compared in constant time)."""
        return bool(token) and hmac.compare_digest(session.csrf.encode(), str(token).encode())
