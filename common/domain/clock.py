"""Time, injectable: every component takes a ``clock`` so tests never sleep.

Stored dates are RFC 3339 UTC with millisecond precision and a ``Z`` suffix
(``2026-11-21T21:55:46.123Z``). The fixed width makes them sort correctly as text,
which is how the stores compare and page on them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime

#: Seconds since the epoch, like :func:`time.time`.
Clock = Callable[[], float]

system_clock: Clock = time.time


#: The last whole second formatted, and its text up to the milliseconds: every stored
#: write carries dates, and ``strftime`` was a tenth of a worker's CPU per event.
_second: tuple[int, str] = (0, "")


def iso(timestamp: float) -> str:
    """The stored form of ``timestamp`` (what ``datetime.fromtimestamp`` makes of it,
    microseconds rounded half to even, then cut to milliseconds)."""
    global _second  # noqa: PLW0603 - a one-entry cache; a tuple swap is atomic
    frac, whole = math.modf(timestamp)
    micros = round(frac * 1e6)
    second = int(whole)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    elif micros < 0:
        second, micros = second - 1, micros + 1_000_000
    cached = _second
    if cached[0] != second or not cached[1]:
        text = datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        cached = _second = (second, text)
    return f"{cached[1]}{micros // 1000:03d}Z"


def now(clock: Clock = system_clock) -> str:
    """The stored form of the current time of ``clock``."""
    return iso(clock())


def parse(text: str) -> float:
    """Seconds since the epoch for an RFC 3339 date (any offset)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
