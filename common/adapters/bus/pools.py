"""kombu's connection pools, closed when the last bus of the process on a broker closes.

Celery publishes through kombu's *process-wide* pools (``kombu.pools.connections``
and ``kombu.pools.producers``, keyed by the connection's parameters), and
``Celery.close()`` only forgets its own reference to them: the pooled broker
connections stay open until the interpreter exits — where an AMQP socket warns
"unclosed" after the test summary and a Redis one is closed by its finaliser. A bus
cannot just close those pools: two buses on one broker in one process (a client next
to an embedded system, a test's system next to another's) share them. So each bus
is counted here when it is made, and the last one on its broker to close closes the
pools, with every connection in them.
"""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from kombu import pools as kombu_pools
from kombu.utils.collections import eqhash

_lock = threading.Lock()
#: Open buses per pool key (the broker connection's parameters, as kombu keys them).
_users: Counter[Any] = Counter()


def pool_key(app: Any) -> Any:
    """The key kombu's pool groups file ``app``'s publishing connection under."""
    connection = app.connection_for_write()  # not connected: only its parameters
    try:
        return eqhash(connection)
    finally:
        connection.release()


def opened(app: Any) -> Any:
    """Count a bus whose Celery ``app`` may publish; the key to give :func:`closed`."""
    key = pool_key(app)
    with _lock:
        _users[key] += 1
    return key


def closed(key: Any) -> None:
    """A bus counted by :func:`opened` closed: if it was the last on its broker, close
    the producer and connection pools kombu keeps for that broker."""
    with _lock:
        _users[key] -= 1
        if _users[key] > 0:
            return
        del _users[key]
        # EqualityDict files each pool under eqhash(connection): plain dict.pop finds it.
        held = [
            dict.pop(group, key, None) for group in (kombu_pools.producers, kombu_pools.connections)
        ]
    for pool in held:
        if pool is not None:
            pool.force_close_all()
