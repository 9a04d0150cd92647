"""Priority of a job and of the messages sent on its behalf (issue 15).

Three levels, ``low``, ``medium`` (the default) and ``high``, as
``pipelinejob_priority.json`` says. A launch names its job's priority; the job keeps
it; every execution stores the priority it was published with, so a re-publish
(recovery, a retry) keeps it. How a broker honours it is the bus's business
(:mod:`pipelinejobs.adapters.bus.celery`); here are only the names.
"""

from __future__ import annotations

from typing import Any

LOW, MEDIUM, HIGH = "low", "medium", "high"
#: Lowest first.
PRIORITIES = (LOW, MEDIUM, HIGH)
DEFAULT_PRIORITY = MEDIUM


def priority_of(value: Any) -> str | None:
    """``value`` if it names a priority, else None (a record written before
    priorities, or a field that means something else)."""
    return value if isinstance(value, str) and value in PRIORITIES else None


def promoted(value: Any) -> str | None:
    """The level above ``value`` (a record without one is ``medium``); None for
    ``high``, the top. What aging publishes a long-waiting execution at."""
    level = priority_of(value) or DEFAULT_PRIORITY
    above = PRIORITIES.index(level) + 1
    return PRIORITIES[above] if above < len(PRIORITIES) else None
