"""Time, injectable: every component takes a ``clock`` so tests never sleep.

Stored dates are RFC 3339 UTC with millisecond precision and a ``Z`` suffix
(``2026-11-21T21:55:46.123Z``). The fixed width makes them sort correctly as text,
which is how the stores compare and page on them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

#: Seconds since the epoch, like :func:`time.time`.
Clock = Callable[[], float]

system_clock: Clock = time.time


def iso(timestamp: float) -> str:
    """The stored form of ``timestamp``."""
    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now(clock: Clock = system_clock) -> str:
    """The stored form of the current time of ``clock``."""
    return iso(clock())


def parse(text: str) -> float:
    """Seconds since the epoch for an RFC 3339 date (any offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
