"""The Redis transport keeps one client per channel and pool, and is kombu's otherwise.

The end-to-end behaviour on it (delivery, acknowledgement, restore of a killed
worker's message) is what test_flow.py and test_crash.py run through; here, only
what the subclass changes.
"""

from __future__ import annotations

import time

import pytest
from kombu import Exchange, Queue

from pipelinejobs.adapters.bus import redis_transport
from pipelinejobs.adapters.bus.celery import make_app
from pipelinejobs.config import BusSettings


@pytest.mark.parametrize(
    ("url", "ours"),
    [
        ("redis://127.0.0.1:6379/11", True),
        ("amqp://guest:guest@127.0.0.1:5672//", False),
        ("memory://", False),
        ("rediss://127.0.0.1:6380/0", False),  # TLS and sentinel stay kombu's own
    ],
)
def test_only_plain_redis_urls_use_it(url: str, ours: bool) -> None:
    app = make_app(BusSettings(), url, ["jobs-manager"])
    transport = app.connection_for_write().transport_cls
    assert (transport == redis_transport.TRANSPORT) is ours


def test_one_client_per_channel_until_the_pool_is_replaced(redis_url: str) -> None:
    app = make_app(BusSettings(), redis_url, ["jobs-manager"])
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        assert isinstance(channel, redis_transport.Channel)
        first = channel._create_client()
        assert channel._create_client() is first
        assert first.connection_pool is channel.pool
        channel._disconnect_pools()  # what kombu does after a fork
        second = channel._create_client()
        assert second is not first
        assert second.connection_pool is channel.pool
        assert second.ping()


def test_messages_go_through_it_and_come_back(redis_url: str) -> None:
    app = make_app(BusSettings(), redis_url, ["jobs-manager"])
    with app.connection_for_write() as conn:
        name = "test.redis-transport"
        queue = conn.SimpleQueue(Queue(name, Exchange(name), routing_key=name))
        for n in range(3):
            queue.put({"n": n})
        got = []
        for _ in range(3):
            message = queue.get(timeout=5)
            got.append(message.payload["n"])
            message.ack()
        assert got == [0, 1, 2]
        with pytest.raises(queue.Empty):  # each one acknowledged: none comes back
            queue.get(block=False)
        queue.close()


def test_a_message_a_killed_worker_held_comes_back_at_the_next_scan(redis_url: str) -> None:
    # kombu 5.7 scans for expired messages on every 10th restore call only, unless told
    # otherwise: a killed worker's message came back 10 x bus.restore_interval late.
    app = make_app(BusSettings(visibility_timeout=1, restore_interval=1.0), redis_url, ["x"])
    with app.connection_for_write() as conn:
        name = "test.redis-restore"
        queue = conn.SimpleQueue(Queue(name, Exchange(name), routing_key=name))
        queue.put({"n": 1})
        held = queue.get(timeout=5)  # taken, never acknowledged: its worker was killed
        channel = queue.channel
        restore = channel.qos.restore_visible
        restore(interval=channel.unacked_restore_throttle)  # the first call always scans
        with pytest.raises(queue.Empty):  # not past its visibility timeout yet
            queue.get(block=False)
        aged = {held.delivery_tag: time.time() - 10}
        channel.client.zadd(channel.unacked_index_key, aged)
        restore(interval=channel.unacked_restore_throttle)  # the next one scans too
        again = queue.get(timeout=5)
        assert again.payload == {"n": 1} and again.delivery_info["redelivered"]
        again.ack()
        # A worker killed mid-scan holds the scan's lock: seconds, not kombu's 300.
        assert channel.unacked_mutex_expire <= 5
        queue.close()
