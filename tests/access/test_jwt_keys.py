"""Keys issued as JWTs (for Tapis v3 clients), key expiry, and nonce ids listed again."""

from __future__ import annotations

import json
from typing import Any

import jwt
import pytest

from pipelinejobs.access.keys import Keys, Principal, digest, jwt_signing_key
from pipelinejobs.access.nonces import Nonces
from pipelinejobs.domain import validation
from pipelinejobs.domain.clock import iso
from pipelinejobs.errors import ConfigError, InvalidCredential, ValidationError

SECRET = "s" * 32
OWNER = Principal("key", "k" * 64, "user", "k" * 64, ("jobs-manager",))


@pytest.fixture
def keys(any_store: Any, clock: Any) -> Keys:
    return Keys(any_store, clock=clock, secret=SECRET)


def test_a_jwt_key_carries_its_claims_and_stores_only_its_jti_hash(
    keys: Keys, any_store: Any, clock: Any
) -> None:
    token, doc = keys.create("admin", actors=["jobs-manager"], as_jwt=True, expires_in=600)

    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, jwt_signing_key(SECRET), algorithms=["HS256"], options={
        "verify_exp": False, "verify_iat": False})  # fmt: skip
    assert header["alg"] == "HS256"
    assert claims["iss"] == "pipelinejobs" and claims["role"] == "admin"
    assert claims["sub"] == f"key:{doc['id'][:12]}" and claims["actors"] == ["jobs-manager"]
    assert claims["exp"] == int(clock()) + 600 and claims["iat"] == int(clock())
    assert doc["id"] == digest(claims["jti"]) and doc["format"] == "jwt"
    assert doc["expires"] == iso(int(clock()) + 600)
    stored = any_store.find("keys").items
    assert stored == [doc]
    text = json.dumps(stored)
    assert claims["jti"] not in text and token not in text
    validation.validate("api_key", stored[0])
    principal = keys.authenticate(token)
    assert (principal.id, principal.role, principal.actors) == (
        doc["id"],
        "admin",
        ("jobs-manager",),
    )


def test_without_exp_a_jwt_key_lasts_until_revoked(keys: Keys, clock: Any) -> None:
    token, doc = keys.create("user", as_jwt=True)

    assert "exp" not in jwt.decode(token, options={"verify_signature": False})
    clock.advance(10 * 365 * 86400)
    assert keys.authenticate(token).id == doc["id"]
    keys.revoke(doc["id"][:12])
    with pytest.raises(InvalidCredential, match="revoked"):
        keys.authenticate(token)
    with pytest.raises(InvalidCredential, match="revoked"):
        keys.principal_of(doc["id"])


def test_an_expired_key_is_refused_everywhere_it_is_checked(keys: Keys, clock: Any) -> None:
    token, jdoc = keys.create("user", as_jwt=True, expires_in=60)
    plain, pdoc = keys.create("user", expires_in=60)
    assert keys.authenticate(plain).id == pdoc["id"]

    clock.advance(61)

    for secret in (token, plain):
        with pytest.raises(InvalidCredential, match="expired"):
            keys.authenticate(secret)
    with pytest.raises(InvalidCredential, match="expired"):
        keys.principal_of(jdoc["id"])  # a console session signed in with it ends
    with pytest.raises(InvalidCredential, match="expired"):
        keys.require_active(pdoc["id"])  # and so do the nonces it made


def test_a_jwt_from_elsewhere_is_refused(keys: Keys, any_store: Any, clock: Any) -> None:
    token, doc = keys.create("admin", as_jwt=True)
    claims = jwt.decode(token, options={"verify_signature": False})
    plain, _ = keys.create("admin")

    forged = [
        jwt.encode(claims, jwt_signing_key("another server's secret"), algorithm="HS256"),
        jwt.encode(claims, None, algorithm="none"),
        jwt.encode({**claims, "iss": "elsewhere"}, jwt_signing_key(SECRET), algorithm="HS256"),
        # A plain key's secret as a jti: signed here, but a plain key is no JWT key.
        jwt.encode({**claims, "jti": plain}, jwt_signing_key(SECRET), algorithm="HS256"),
        token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
    ]
    for other in forged:
        with pytest.raises(InvalidCredential):
            keys.authenticate(other)
    with pytest.raises(InvalidCredential, match="JWT"):
        Keys(any_store, clock=clock).authenticate(token)  # a server without the secret


def test_issuing_a_jwt_needs_the_secret_and_a_sane_lifetime(any_store: Any, keys: Keys) -> None:
    with pytest.raises(ConfigError, match="tokens.secret"):
        Keys(any_store).create("user", as_jwt=True)
    for bad in (0, -1, 315_576_001, True):
        with pytest.raises(ValidationError, match="expires_in"):
            keys.create("user", as_jwt=True, expires_in=bad)


def test_a_nonce_id_is_derived_so_its_owner_can_read_it_again(any_store: Any, clock: Any) -> None:
    nonces = Nonces(any_store, clock=clock, secret=SECRET)
    secret, doc = nonces.create("jobs-manager", OWNER, max_uses=2)

    assert nonces.reveal(doc) == secret and doc["id"] == digest(secret)
    assert secret not in json.dumps(any_store.find("nonces").items)
    validation.validate("nonce", any_store.find("nonces").items[0])
    assert Nonces(any_store, clock=clock, secret="t" * 32).reveal(doc) is None
    assert Nonces(any_store, clock=clock).reveal(doc) is None
    # Without a secret (the launcher's callback nonces), an id is random and shown once.
    random, plain = Nonces(any_store, clock=clock).create("jobs-manager", OWNER)
    assert "seed" not in plain and nonces.reveal(plain) is None
    assert nonces.redeem(random, "jobs-manager", "EXECUTE").owner == OWNER.owner
