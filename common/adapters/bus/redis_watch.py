"""What a Redis broker can tell that the others cannot: which messages workers hold,
and whether it lost its queues.

**Held messages.** kombu's Redis transport keeps every message it has handed to a
worker and not yet had acknowledged — reserved, delayed until its ETA, running — in
one hash (``unacked``), restored to its queue after ``bus.visibility_timeout``. Reading
it tells a message a worker holds from one that is lost, so the quick sweep can
re-publish an execution after seconds instead of ``bus.recover_after``. (A message
in kombu's window — popped from its queue, not yet in the hash — is in neither; the
sweep may publish it a second time, which delivery being at least once allows.)

**A lost broker.** A Redis restarted without persistence, flushed, or failed over to
an empty replica comes back with no queues and no unacknowledged messages, and
nothing in Celery or kombu says so: the workers reconnect and wait. The watch keeps a
sentinel key in the broker's database; when it is gone, the broker lost everything
that was in it, and every execution left SUBMITTED from before is re-published. The
server's ``run_id`` (``INFO server``) says whether it restarted, and its uptime when:
a restart's loss dates from its start, a flush's from some moment since the last look
(so the present is used: executions published since are re-published too, once).
A Redis that restarted *with* its data (RDB, AOF) keeps the sentinel; what it lost
since its last save is the quick sweep's. A broker must not evict keys
(``maxmemory-policy noeviction``, which Celery needs anyway), or the sentinel's
eviction would be taken for a loss and cost a round of duplicate publishes.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from pipelinejobs.errors import BusUnavailable

#: The key whose disappearance means the broker lost its data.
SENTINEL = "pipelinejobs.broker-sentinel"


def execution_of(raw: bytes | str) -> str | None:
    """The execution id in one entry of kombu's ``unacked`` hash (a JSON list: the
    message, its exchange and routing key); None for anything else."""
    try:
        message = json.loads(raw)[0]
        body = message["body"]
        if message.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        execution = args[0]["execution"]
    except (ValueError, TypeError, KeyError, IndexError):
        return None
    return execution if isinstance(execution, str) else None


class RedisWatch:
    """Asks a Redis broker (through the Celery app's connection pool) what it holds."""

    def __init__(self, app: Any, clock: Callable[[], float] = time.time) -> None:
        self.app = app
        self.clock = clock
        #: (run_id, sentinel) at the last look; None before the first.
        self._seen: tuple[str, str] | None = None

    @contextmanager
    def _client(self) -> Iterator[tuple[Any, Any]]:
        try:
            with self.app.connection_for_write() as conn:
                channel = conn.default_channel
                with channel.conn_or_acquire() as client:
                    yield channel, client
        except (RedisError, KombuError, OSError) as exc:
            raise BusUnavailable(f"cannot ask the broker what it holds: {exc}") from exc

    def held(self) -> set[str]:
        """Ids of the executions whose message a worker holds unacknowledged."""
        with self._client() as (channel, client):
            payloads = client.hvals(channel.unacked_key)
        return {e for e in map(execution_of, payloads) if e is not None}

    def lost_since(self) -> float | None:
        """When (epoch seconds, this machine's clock) the broker lost its messages,
        if it did since the last call; None otherwise, and on the first call."""
        with self._client() as (_, client):
            info = client.info("server")
            token = client.get(SENTINEL)
            if token is None:
                client.set(SENTINEL, secrets.token_hex(8), nx=True)
                token = client.get(SENTINEL)  # whoever set it first: all agree
        run_id = str(info.get("run_id", ""))
        seen = (run_id, token.decode() if isinstance(token, bytes) else str(token))
        before, self._seen = self._seen, seen
        if before is None or before[1] == seen[1]:
            return None
        if before[0] != run_id:  # restarted empty: lost at its start
            return self.clock() - float(info.get("uptime_in_seconds", 0))
        return self.clock()  # emptied while it ran: at some moment since the last look
