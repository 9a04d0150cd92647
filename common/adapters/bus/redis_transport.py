"""kombu's Redis transport, keeping one client per channel instead of one per command.

kombu's Redis channel builds a new ``redis.Redis`` for every publish, acknowledgement
and unacked-index update (``Channel._create_client``), and redis-py's constructor
rebuilds its ~165-entry response-callback table each time (redis/redis-py#3624):
~50 µs, three or four times per message, on the gateway and on every worker. A
``redis.Redis`` only wraps the channel's connection pool and is thread-safe, so one
per channel and pool does the same work. The cached client is dropped whenever kombu
replaces the pool (after a fork or a reconnection), so it never outlives its pool.

It also stops a lost connection from ending the worker. After a connection error,
Celery closes the consumer's connection (``Consumer.on_connection_error_after_connected``)
after ``collect()`` has already cut the transport off from it; closing the channel
then restores the unacknowledged messages through a client built from the transport's
connection parameters, which are gone: kombu raised AttributeError, which no one
ignores, and the worker stopped ("Unrecoverable error") — about one Redis restart in
ten with messages in flight. The channel now raises the connection error it is, which
kombu ignores there as it does the others; the messages stay in Redis's unacked hash
(restored after ``bus.visibility_timeout``), or were lost with a Redis that restarted
empty (re-published by :mod:`pipelinejobs.runtime.recovery`).

Used for ``redis://`` brokers (see :func:`pipelinejobs.adapters.bus.celery.make_app`); everything
else — visibility timeouts, unacked restore, priorities — is kombu's own.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

#: What ``bus.broker_url``'s ``redis://`` scheme is served by (Celery's ``broker_transport``).
TRANSPORT = f"{__name__}:Transport"


class Channel(kombu_redis.Channel):
    _cached_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if getattr(self.connection, "client", None) is None:  # closed under us: see above
            raise RedisConnectionError("the connection to the broker was closed")
        if asynchronous:  # kombu caches that one itself (``Channel.client``)
            return super()._create_client(asynchronous=True)
        client = self._cached_client
        if client is None or client.connection_pool is not self.pool:
            client = self._cached_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel
