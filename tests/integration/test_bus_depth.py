"""Bus.depth on every broker: what the recovery sweep asks before re-publishing."""

from __future__ import annotations

import pytest

from pipelinejobs.adapters.bus.celery import CeleryBus
from pipelinejobs.config import BusSettings


@pytest.fixture(params=["memory", "redis", "rabbitmq"])
def broker(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    return str(request.getfixturevalue(f"{request.param}_url"))


def test_depth_counts_what_waits_in_a_queue(broker: str) -> None:
    bus = CeleryBus(BusSettings(), broker, ["jobs-manager", "jobs-indexer"], lambda a, e: None)
    try:
        with bus.app.connection_for_write() as conn:  # a clean slate on a shared broker
            for alias in bus.aliases:
                try:
                    conn.default_channel.queue_purge(f"actor.{alias}")
                except Exception:  # not declared yet
                    pass
        assert bus.depth("jobs-manager") == 0  # never declared, or empty: nothing waits
        bus.publish("jobs-manager", "AAAAAAAAAAAAA")
        bus.publish("jobs-manager", "BBBBBBBBBBBBB")
        assert bus.depth("jobs-manager") == 2
        assert bus.depth("jobs-indexer") == 0
    finally:
        with bus.app.connection_for_write() as conn:
            conn.default_channel.queue_purge("actor.jobs-manager")
        bus.close()


def test_held_lists_the_executions_a_worker_holds(broker: str) -> None:
    """Redis keeps what it handed to a consumer, unacknowledged, in one hash: the quick
    sweep leaves those alone. Other brokers cannot say (None)."""
    bus = CeleryBus(BusSettings(), broker, ["jobs-manager"], lambda a, e: None)
    try:
        if not broker.startswith("redis"):
            assert bus.held() is None
            return
        with bus.app.connection_for_write() as conn:
            conn.default_channel.queue_purge("actor.jobs-manager")
        bus.publish("jobs-manager", "AAAAAAAAAAAAA")
        bus.publish("jobs-manager", "BBBBBBBBBBBBB")
        assert bus.held() == set()
        with bus.app.connection_for_write() as conn:
            taken = conn.default_channel.basic_get("actor.jobs-manager", no_ack=False)
            assert taken is not None
            assert bus.held() == {"AAAAAAAAAAAAA"}  # taken, not acknowledged
            assert bus.depth("jobs-manager") == 1
            taken.ack()
        assert bus.held() == set()
    finally:
        with bus.app.connection_for_write() as conn:
            conn.default_channel.queue_purge("actor.jobs-manager")
        bus.close()


def test_a_redis_that_lost_its_data_is_noticed(redis_url: str) -> None:
    import time

    import redis

    bus = CeleryBus(BusSettings(), redis_url, ["jobs-manager"], lambda a, e: None)
    try:
        assert bus.watch is not None
        assert bus.watch.lost_since() is None  # the first look leaves the sentinel
        assert bus.watch.lost_since() is None  # nothing lost since
        client = redis.Redis.from_url(redis_url)
        client.flushdb()  # as a restart without persistence, or a failover, would
        client.close()
        before = time.time()
        lost = bus.watch.lost_since()
        assert lost is not None and before - 1 <= lost <= time.time()
        assert bus.watch.lost_since() is None  # noticed once
    finally:
        bus.close()
