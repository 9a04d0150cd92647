"""kombu's Redis transport, keeping one client per channel instead of one per command.

kombu's Redis channel builds a new ``redis.Redis`` for every publish, acknowledgement
and unacked-index update (``Channel._create_client``), and redis-py's constructor
rebuilds its ~165-entry response-callback table each time (redis/redis-py#3624):
~50 µs, three or four times per message, on the gateway and on every worker. A
``redis.Redis`` only wraps the channel's connection pool and is thread-safe, so one
per channel and pool does the same work. The cached client is dropped whenever kombu
replaces the pool (after a fork or a reconnection), so it never outlives its pool.

Used for ``redis://`` brokers (see :func:`pipelinejobs.adapters.bus.celery.make_app`); everything
else — visibility timeouts, unacked restore, priorities — is kombu's own.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

#: What ``bus.broker_url``'s ``redis://`` scheme is served by (Celery's ``broker_transport``).
TRANSPORT = f"{__name__}:Transport"


class Channel(kombu_redis.Channel):
    _cached_client: Any = None

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous:  # kombu caches that one itself (``Channel.client``)
            return super()._create_client(asynchronous=True)
        client = self._cached_client
        if client is None or client.connection_pool is not self.pool:
            client = self._cached_client = super()._create_client()
        return client


class Transport(kombu_redis.Transport):
    Channel = Channel
