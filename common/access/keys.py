"""Bearer keys: who is calling the HTTP gateway.

A key is 32 hex characters shown once, when it is created; only its SHA-256 is
stored, so a copy of the database does not hand out credentials. Each key has a
role — ``admin`` (everything, including key management) or ``user`` — and
optionally the list of actors it may post to (empty: all of them).

A key may also be issued as a **JWT** (``pipelinejobs keys create --jwt``), for clients
that only take JWTs (Tapis v3's tapipy): HS256, signed with a key derived from
``tokens.secret``, with claims ``iss`` (``pipelinejobs``), ``sub`` (``key:`` and the
key's listed id), ``role``, ``jti`` (128 random bits), ``iat``, ``actors`` when it is
limited, and ``exp`` when an expiry was asked for. Only the SHA-256 of its ``jti`` is
stored, as its id: presenting it checks the signature and the expiry, then looks the
key up by that id, so revoking it refuses it at once — the signature alone is never
enough. Neither a copy of the database (no ``jti``) nor the secret alone (no stored
``jti`` to sign) can make one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import jwt

from pipelinejobs.adapters.store.base import Document, Store
from pipelinejobs.adapters.store.cas import DEFAULT_RETRIES, Change, compare_and_set
from pipelinejobs.domain.clock import Clock, iso, now, parse, system_clock
from pipelinejobs.errors import ConfigError, InvalidCredential, NotFound, ValidationError

ADMIN, USER = "admin", "user"
ROLES = (ADMIN, USER)
#: Owner of the nonces the system mints for itself (a launched job's callback URL):
#: no key stands behind them, so no revocation ends them — they expire or run out.
SYSTEM_OWNER = "system:launcher-proxy"
#: How a key issued as a JWT is signed, and who it says issued it.
JWT_ALGORITHM = "HS256"
JWT_ISSUER = "pipelinejobs"
#: A JWT's shape (header.payload.signature, base64url): anything else is a plain key.
JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
#: Longest lifetime a key may be given (s): ten years of 365.25 days.
MAX_KEY_LIFETIME = 315_576_000


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def jwt_signing_key(secret: str) -> str:
    """The HS256 key of JWT keys: derived from ``tokens.secret`` (an HMAC of a fixed
    label), so the secret itself signs nothing but update tokens."""
    return hmac.new(secret.encode(), b"pipelinejobs:jwt-keys", hashlib.sha256).hexdigest()


def owner_label(owner: str) -> str:
    """An owner as the API shows it: a key by its listed id (the first 12 characters
    of its hash, what ``keys list`` prints and ``keys revoke`` takes), the system's
    own name whole."""
    return owner if owner == SYSTEM_OWNER else owner[:12]


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
        #: What JWT keys are signed and checked with (from ``tokens.secret``); without
        #: a secret, JWT keys can be neither issued nor accepted.
        self._signing_key = jwt_signing_key(secret) if secret else ""

    def create(
        self,
        role: str,
        *,
        description: str = "",
        actors: Iterable[str] = (),
        as_jwt: bool = False,
        expires_in: float | None = None,
    ) -> tuple[str, Document]:
        """A new key: (the secret, shown only now; the stored record). ``as_jwt``: the
        secret is a signed JWT (see the module docstring); ``expires_in``: seconds it
        stays valid (its ``exp``), else until revoked."""
        if role not in ROLES:
            raise ValidationError(
                f"role must be one of {', '.join(ROLES)}, not {role!r}",
                path="role",
                allowed=list(ROLES),
            )
        if expires_in is not None and (
            isinstance(expires_in, bool) or not 0 < expires_in <= MAX_KEY_LIFETIME
        ):
            raise ValidationError(
                f"expires_in must be a number of seconds above 0 and at most "
                f"{MAX_KEY_LIFETIME} (ten years), not {expires_in!r}",
                path="expires_in",
            )
        allowed = sorted(set(actors))
        issued = int(self.clock())
        expires = None if expires_in is None else issued + int(expires_in)
        if as_jwt:
            if not self._signing_key:
                raise ConfigError("issuing a JWT key needs tokens.secret", setting="tokens.secret")
            jti = secrets.token_urlsafe(16)
            key_id = digest(jti)
            claims: dict[str, Any] = {
                "iss": JWT_ISSUER,
                "sub": f"key:{owner_label(key_id)}",
                "role": role,
                "jti": jti,
                "iat": issued,
            }
            if allowed:
                claims["actors"] = allowed
            if expires is not None:
                claims["exp"] = expires
            secret = jwt.encode(claims, self._signing_key, algorithm=JWT_ALGORITHM)
        else:
            secret = secrets.token_hex(16)
            key_id = digest(secret)
        doc = {
            "id": key_id,
            "role": role,
            "description": description,
            "actors": allowed,
            "created": now(self.clock),
            "revoked": False,
        }
        if as_jwt:
            doc["format"] = "jwt"
        if expires is not None:
            doc["expires"] = iso(expires)
        return secret, self.store.insert(self.collection, doc)

    def authenticate(self, secret: str) -> Principal:
        """The principal for a presented key — a plain key or a JWT key —;
        InvalidCredential if unknown, revoked, expired or (a JWT) not signed here."""
        if JWT_SHAPE.fullmatch(secret):
            key_id = self._jwt_key_id(secret)
        else:
            key_id = digest(secret)
        doc = self.store.get(self.collection, key_id)
        if doc is None or not hmac.compare_digest(doc["id"], key_id):
            raise InvalidCredential("the bearer key is not known")
        if (doc.get("format") == "jwt") != bool(JWT_SHAPE.fullmatch(secret)):
            raise InvalidCredential("the bearer key is not known")
        return self._active(doc, "the bearer key")

    def _jwt_key_id(self, token: str) -> str:
        """The stored id of the key a JWT presents: its signature, issuer and expiry
        checked first (InvalidCredential saying which failed)."""
        if not self._signing_key:
            raise InvalidCredential("this server does not accept JWT keys (no tokens.secret)")
        try:
            # Times are checked below against this service's clock (injectable), not
            # PyJWT's; everything else — the algorithm, the signature, the issuer,
            # the claims a key has — here.
            claims = jwt.decode(
                token,
                self._signing_key,
                algorithms=[JWT_ALGORITHM],
                issuer=JWT_ISSUER,
                options={
                    "require": ["jti", "iat", "sub"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.InvalidTokenError as exc:
            raise InvalidCredential(f"the JWT is not a key of this server: {exc}") from None
        jti, exp = claims.get("jti"), claims.get("exp")
        if not isinstance(jti, str) or not jti:
            raise InvalidCredential("the JWT is not a key of this server: no jti")
        if exp is not None:
            if isinstance(exp, bool) or not isinstance(exp, int | float):
                raise InvalidCredential("the JWT is not a key of this server: exp is not a date")
            if exp <= self.clock():
                raise InvalidCredential(f"the JWT key expired at {iso(exp)}")
        return digest(jti)

    def _active(self, doc: Document, what: str) -> Principal:
        """The principal of key record ``doc``, unless it was revoked or has expired."""
        if doc.get("revoked"):
            raise InvalidCredential(f"{what} was revoked")
        expires = doc.get("expires")
        if expires and parse(str(expires)) <= self.clock():
            raise InvalidCredential(f"{what} expired at {expires}")
        return Principal("key", doc["id"], doc["role"], doc["id"], tuple(doc.get("actors") or ()))

    def principal_of(self, key_id: str) -> Principal:
        """The principal of the key stored as ``key_id`` (a hash, never the secret):
        what a console session holds instead of the key. InvalidCredential if the key
        is unknown or revoked — a revoked key's sessions end at their next request."""
        doc = self.store.get(self.collection, key_id)
        if doc is None:
            raise InvalidCredential("the key this session was signed in with is not known")
        return self._active(doc, "the key this session was signed in with")

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
        self._active(doc, "the key that created this nonce")

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
