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
