"""Publishing a due message on Redis or the in-process broker without Celery's
``send_task`` around it.

Every accepted POST publishes one message, and ``send_task`` (routing, the task
message's construction, signals, a pooled producer, ``maybe_declare``, kombu's
``ensure`` and serializer registry) cost the gateway three to four times the one
LPUSH it ends in: about 0.3 ms of CPU per message against 0.07 ms (``bench/hotpath.py``).
What a worker receives is fixed by Celery's task message protocol 2 (headers,
properties, body ``[args, kwargs, embed]``), so the message is built here in that
form, with the same fields ``send_task`` gives it, and handed to a kombu channel's own
``prepare_message``/``basic_publish`` — kombu still encodes the body, names the
delivery tag and picks the priority level's list, exactly as for ``send_task``.
``tests/adapters/bus/test_direct_publish.py`` compares the two messages field by field.

Only what the fast path is for goes through it: a message due now (a delayed one
needs Celery's ``eta``) on ``redis://``/``rediss://`` or ``memory://``. Anything that
fails here — a lost connection, a closed channel — is published again through
``send_task``, whose retry policy reconnects: the fast path adds no way to lose a
message. One channel per process (kombu's channels do not survive a fork); on Redis
its client is thread-safe (``redis_transport``), and the in-process broker's queues
are.
"""

from __future__ import annotations

import json
import os
import threading
import uuid
from typing import Any

from celery import Celery
from celery.utils.nodenames import anon_nodename

#: Celery's protocol-2 headers that do not change from one message to the next.
_HEADERS: dict[str, Any] = {
    "lang": "py",
    "shadow": None,
    "eta": None,
    "expires": None,
    "group": None,
    "group_index": None,
    "retries": 0,
    "timelimit": [None, None],
    "parent_id": None,
    "kwargsrepr": "{}",
    "ignore_result": None,
    "replaced_task_nesting": 0,
    "stamped_headers": None,
    "stamps": {},
}
#: The body's third part: no callbacks, errbacks, chain or chord.
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}
FAST_SCHEMES = ("redis", "rediss", "memory")


class DirectPublisher:
    """One process's channel, and the messages it publishes."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._pid = 0
        self._connection: Any = None
        self._channel: Any = None
        self._origin = ""

    def _channel_now(self) -> Any:
        pid = os.getpid()
        if self._channel is None or self._pid != pid:
            with self._lock:
                if self._channel is None or self._pid != pid:
                    self._connection = self.app.connection_for_write()
                    self._channel = self._connection.default_channel
                    self._origin, self._pid = anon_nodename(), pid
        return self._channel

    def publish(self, task: str, queue: str, envelope: dict[str, Any], priority: int) -> None:
        """Publish ``task(envelope)`` to ``queue`` now; raises whatever kombu raises."""
        channel = self._channel_now()
        task_id = str(uuid.uuid4())
        args = [envelope]
        argsrepr = repr(args)
        headers = {
            **_HEADERS,
            "task": task,
            "id": task_id,
            "root_id": task_id,
            "argsrepr": argsrepr,
            "origin": self._origin,
        }
        properties = {
            "correlation_id": task_id,
            "reply_to": self.app.thread_oid,
            "argsrepr": argsrepr,
            "kwargsrepr": "{}",
            "delivery_mode": 2,
        }
        body = json.dumps([args, {}, _EMBED]).encode()
        message = channel.prepare_message(
            body, priority, "application/json", "utf-8", headers, properties
        )
        channel.basic_publish(message, exchange="", routing_key=queue)

    def reset(self) -> None:
        """Forget the channel (after a failure: the next publish opens another)."""
        with self._lock:
            connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except Exception:  # noqa: BLE001, S110 - a broken connection may not close cleanly
                pass

    close = reset
