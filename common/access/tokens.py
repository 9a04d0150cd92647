"""Update tokens and admin tokens: who may change a pipeline or a job.

An **update token** is 16 hex characters: an HMAC-SHA256 of the document's UUID and
its rotation counter under the server secret. Nothing secret is stored with the
document, the token is the same after every event (the original rotated it on every
write, which broke the callbacks that compute backends had been handed), and it only
changes when an administrator bumps the rotation counter.

An **admin token** is accepted in place of any update token and is required for
administrative actions. It is 17 characters: the minting time in milliseconds
(8 base-36 digits) followed by 9 hex digits of an HMAC of that time under the admin
secret. It is verified without any stored state and expires ``admin_token_ttl``
seconds (30 by default) after it was minted.

Every comparison is constant-time (:func:`hmac.compare_digest`).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field
from enum import Enum

from pipelinejobs.domain.clock import Clock
from pipelinejobs.errors import PermissionDenied

UPDATE_TOKEN_LENGTH = 16
_ADMIN_TIME_DIGITS = 8
_ADMIN_MAC_DIGITS = 9
ADMIN_TOKEN_LENGTH = _ADMIN_TIME_DIGITS + _ADMIN_MAC_DIGITS
#: A token minted this far in the future is still accepted (clock skew between hosts).
CLOCK_SKEW_SECONDS = 5.0
_BASE36 = "0123456789abcdefghijklmnopqrstuvwxyz"


class Grant(Enum):
    """What a presented token proved."""

    UPDATE = "update"
    ADMIN = "admin"


def _base36(number: int, width: int) -> str:
    digits = []
    while number:
        number, rem = divmod(number, 36)
        digits.append(_BASE36[rem])
    return "".join(reversed(digits)).rjust(width, "0")


def _mac(secret: str, message: str) -> str:
    return hmac.new(secret.encode(), message.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class TokenAuthority:
    """Mints and checks tokens under one deployment's secrets."""

    secret: str
    admin_secret: str
    admin_ttl: float = 30.0
    clock: Clock = field(default=time.time, compare=False)

    def __post_init__(self) -> None:
        if not self.secret or not self.admin_secret:
            raise ValueError("TokenAuthority needs both a secret and an admin secret")

    # -- update tokens -------------------------------------------------------------------

    def update_token(self, uuid: str, rotation: int = 0) -> str:
        """The update token of document ``uuid`` at rotation ``rotation``."""
        return _mac(self.secret, f"update:{uuid}:{rotation}")[:UPDATE_TOKEN_LENGTH]

    def is_update_token(self, uuid: str, rotation: int, token: str) -> bool:
        return hmac.compare_digest(self.update_token(uuid, rotation).encode(), str(token).encode())

    # -- admin tokens --------------------------------------------------------------------

    def mint_admin_token(self) -> str:
        """A new admin token, valid for ``admin_ttl`` seconds from now."""
        stamp = _base36(int(self.clock() * 1000), _ADMIN_TIME_DIGITS)
        return stamp + _mac(self.admin_secret, f"admin:{stamp}")[:_ADMIN_MAC_DIGITS]

    def admin_token_age(self, token: str) -> float | None:
        """Seconds since ``token`` was minted, or None if it is not a genuine admin token."""
        token = str(token)
        if len(token) != ADMIN_TOKEN_LENGTH:
            return None
        stamp, mac = token[:_ADMIN_TIME_DIGITS], token[_ADMIN_TIME_DIGITS:]
        expected = _mac(self.admin_secret, f"admin:{stamp}")[:_ADMIN_MAC_DIGITS]
        if not hmac.compare_digest(expected.encode(), mac.encode()):
            return None
        try:
            minted_ms = int(stamp, 36)
        except ValueError:
            return None
        return self.clock() - minted_ms / 1000.0

    def is_admin_token(self, token: str) -> bool:
        """True for a genuine admin token that has not expired."""
        age = self.admin_token_age(token)
        return age is not None and -CLOCK_SKEW_SECONDS <= age <= self.admin_ttl

    # -- the check every mutating message goes through ------------------------------------

    def authorize(
        self,
        uuid: str,
        rotation: int,
        token: str | None,
        *,
        admin_only: bool = False,
        action: str = "change",
    ) -> Grant:
        """Return what ``token`` grants on document ``uuid`` or raise PermissionDenied.

        ``admin_only`` is for administrative actions (reset, ready, token rotation),
        which an update token does not authorise.
        """
        if not token:
            needed = "an admin token" if admin_only else "its update token or an admin token"
            raise PermissionDenied(
                f"to {action} {uuid} you must send {needed} "
                f"(field 'token' or URL parameter token=)",
                uuid=uuid,
                action=action,
            )
        if self.is_admin_token(token):
            return Grant.ADMIN
        if not admin_only and self.is_update_token(uuid, rotation, token):
            return Grant.UPDATE
        age = self.admin_token_age(token)
        if age is None:
            reason = (
                "it needs a valid admin token"
                if admin_only
                else "the token is not the update token of this document"
            )
        elif age < 0:
            reason = "the admin token was minted in the future (check the clocks)"
        else:
            reason = f"the admin token expired {age - self.admin_ttl:.0f} s ago"
        raise PermissionDenied(f"cannot {action} {uuid}: {reason}", uuid=uuid, action=action)
