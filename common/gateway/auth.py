"""Authentication and authorisation of HTTP requests, as one layer.

Routes declare what they need with :func:`requires`; nothing inside a route looks at
credentials. A request authenticates with ``Authorization: Bearer <key>`` — or the
same key in ``X-Tapis-Token: <key>``, the header Tapis v3 clients (tapipy) send; a
key issued as a JWT is accepted in either — or, on an
actor's routes only, ``?x-nonce=<id>`` — a nonce is scoped to one actor and used up
one request at a time (a request refused as malformed, or answered 503 "retry", gives
its use back). Missing or unknown credentials are 401; a valid credential without the
right is 403. (Per-document update tokens are a different thing: the actors check them,
because they guard the documents, not the endpoints.)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from flask import current_app, g, request
from werkzeug.exceptions import RequestEntityTooLarge

from pipelinejobs.access.keys import Principal, owner_label
from pipelinejobs.access.nonces import level_rank
from pipelinejobs.errors import (
    RETRY_AFTER,
    InvalidCredential,
    MissingCredential,
    PermissionDenied,
    ValidationError,
)

F = TypeVar("F", bound=Callable[..., Any])
#: Tapis v3's credential header: a key (plain or JWT) without the ``Bearer`` word.
TAPIS_TOKEN = "X-Tapis-Token"
#: Errors after which a request's nonce use is given back: refused as malformed
#: (400/413/415), or not carried out for a moment (503: "retry, nothing was written").
REFUNDED: tuple[type[Exception], ...] = (ValidationError, RequestEntityTooLarge, *RETRY_AFTER)


def _principal(alias: str | None, level: str, *, keys_only: bool = False) -> Principal:
    gateway = current_app.config["PIPELINEJOBS"]
    header = request.headers.get("Authorization", "")
    tapis = request.headers.get(TAPIS_TOKEN, "").strip()
    nonce = request.args.get("x-nonce")
    if header:  # with both headers, Authorization is the credential
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise InvalidCredential("the Authorization header must be 'Bearer <key>'")
        principal = gateway.keys.authenticate(secret.strip())
    elif tapis:
        principal = gateway.keys.authenticate(tapis)
    elif nonce:
        if alias is None:
            raise InvalidCredential(
                "a nonce is accepted only on /actors/v2/<actor>/ routes; use a bearer key here"
            )
        if keys_only:  # refused before redeeming: a refused request must not spend a use
            raise PermissionDenied("a nonce cannot manage nonces; use a bearer key")
        return gateway.nonces.redeem(nonce, alias, level, check_owner=gateway.keys.require_active)
    else:
        raise MissingCredential(
            "send 'Authorization: Bearer <key>' (or 'X-Tapis-Token: <key>') or, on an "
            "actor's routes, the x-nonce URL parameter"
        )
    if (
        alias is not None
        and level_rank(level) >= level_rank("EXECUTE")
        and (not principal.may_post(alias))
    ):
        raise PermissionDenied(
            f"this key may not post to {alias}; it may post to: {', '.join(principal.actors)}"
        )
    return principal


def requires(
    level: str = "READ",
    *,
    admin: bool = False,
    keys_only: bool = False,
) -> Callable[[F], F]:
    """Authenticate the request for ``level`` on the route's ``actor`` (if it has one).

    Sets ``g.principal`` and, on actor routes, ``g.actor`` (resolved from alias or id).
    ``admin``: only admin keys. ``keys_only``: nonces are refused (managing nonces).
    """

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            gateway = current_app.config["PIPELINEJOBS"]
            alias = None
            if "actor" in kwargs:
                g.actor = gateway.runtime.actor(kwargs["actor"])
                alias = g.actor.alias
            principal = _principal(alias, level, keys_only=keys_only)
            if admin and not principal.is_admin:
                raise PermissionDenied("this needs an admin key")
            g.principal = principal
            try:
                return view(*args, **kwargs)
            except REFUNDED:
                # Refused as malformed, or not carried out, before anything was stored:
                # the nonce use it spent is given back (if that too keeps losing its
                # compare-and-set, the caller gets TooManyConflicts, not silence).
                if principal.kind == "nonce":
                    gateway.nonces.refund(principal.id)
                raise

        return wrapper  # type: ignore[return-value]

    return decorate


def caller_owner() -> str:
    """The caller's owner label (its key's listed id, a nonce's owner's): what a
    record it creates keeps as ``owner``."""
    return owner_label(g.principal.owner)


def owner_named(value: str) -> str:
    """An ``owner`` filter as stored: ``me`` is the caller (:func:`caller_owner`),
    anything else is taken as it is."""
    return caller_owner() if value == "me" else value
