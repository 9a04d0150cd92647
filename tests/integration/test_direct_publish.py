"""The direct publish (pipelinejobs.adapters.bus.direct_publish) writes the message
Celery's send_task writes, on a real Redis and on the in-process broker, and a
failure there costs nothing: the message goes through send_task instead."""

from __future__ import annotations

import base64
import dataclasses
import json
import threading
import time
from typing import Any

import pytest
import redis
from kombu.transport import memory

from pipelinejobs.adapters.bus.celery import CeleryBus, EmbeddedWorker
from pipelinejobs.config import BusSettings
from pipelinejobs.domain.priority import HIGH, LOW, MEDIUM

#: What differs between two messages for two executions: ids, tags, the reprs.
VARYING = {"id", "root_id", "correlation_id", "delivery_tag", "argsrepr", "body"}


def bus_on(url: str, direct: bool, delivered: list[tuple[str, str]] | None = None) -> CeleryBus:
    settings = dataclasses.replace(BusSettings(), direct_publish=direct)
    out = delivered if delivered is not None else []
    return CeleryBus(settings, url, ["jobs-manager"], lambda a, e: out.append((a, e)))


def through_celery(bus: CeleryBus, execution: str, priority: str = MEDIUM) -> None:
    """Publish on the same bus (the same app: the same ``reply_to``) via send_task."""
    direct, bus._direct = bus._direct, None
    try:
        bus.publish("jobs-manager", execution, priority=priority)
    finally:
        bus._direct = direct


def redis_messages(url: str) -> dict[str, list[dict[str, Any]]]:
    client = redis.Redis.from_url(url)
    out = {}
    for key in client.keys("actor.*"):
        if client.type(key) == b"list":
            out[key.decode()] = [json.loads(m) for m in client.lrange(key, 0, -1)]
    client.close()
    return out


def memory_messages() -> dict[str, list[dict[str, Any]]]:
    out = {}
    for name, queue in memory.Channel.queues.items():
        if name.startswith("actor.jobs-manager"):
            out[name] = list(queue.queue)
    return out


def body_of(message: dict[str, Any]) -> Any:
    raw = message["body"]
    if message["properties"].get("body_encoding") == "base64":
        raw = base64.b64decode(raw)
    return json.loads(raw)


def assert_same_form(direct: dict[str, Any], celery: dict[str, Any], execution: str) -> None:
    """Same keys everywhere, same values except the per-message ones."""

    def walk(a: Any, b: Any, where: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            assert set(a) == set(b), f"{where}: {sorted(set(a) ^ set(b))}"
            for key in a:
                if key not in VARYING:
                    walk(a[key], b[key], f"{where}/{key}")
        else:
            assert a == b, f"{where}: {a!r} != {b!r}"

    walk(direct, celery, "")
    headers, props = direct["headers"], direct["properties"]
    assert headers["id"] == headers["root_id"] == props["correlation_id"]
    assert props["delivery_tag"] != celery["properties"]["delivery_tag"]
    args, kwargs, embed = body_of(direct)
    assert args == [{"execution": execution, "actor": "jobs-manager"}]
    assert (kwargs, embed) == tuple(body_of(celery)[1:])
    assert headers["argsrepr"] == repr(args)


@pytest.mark.parametrize("priority", [HIGH, MEDIUM, LOW])
def test_redis_message_is_celerys_message(redis_url: str, priority: str) -> None:
    bus = bus_on(redis_url, True)
    try:
        through_celery(bus, "E-celery", priority)
        by_celery = redis_messages(redis_url)
        redis.Redis.from_url(redis_url).flushdb()
        bus.publish("jobs-manager", "E-direct", priority=priority)
        by_direct = redis_messages(redis_url)
    finally:
        bus.close()
    assert list(by_direct) == list(by_celery)  # the same priority level's list
    [(key, [celery_msg])] = by_celery.items()
    [direct_msg] = by_direct[key]
    assert_same_form(direct_msg, celery_msg, "E-direct")


def test_memory_message_is_celerys_message() -> None:
    for queue in memory.Channel.queues.values():
        queue.queue.clear()
    bus = bus_on("memory://", True)
    try:
        through_celery(bus, "E-celery")
        bus.publish("jobs-manager", "E-direct")
        [(_, messages)] = memory_messages().items()
    finally:
        bus.close()
        for queue in memory.Channel.queues.values():
            queue.queue.clear()
    celery_msg, direct_msg = messages
    assert_same_form(direct_msg, celery_msg, "E-direct")


def test_a_failed_direct_publish_goes_through_send_task(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    bus = bus_on(redis_url, True)
    assert bus._direct is not None
    broken = bus._direct._channel_now()

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("the broker went away")

    broken.basic_publish = refuse
    try:
        bus.publish("jobs-manager", "E-1")
        bus.publish("jobs-manager", "E-2")  # a new channel: direct again
    finally:
        bus.close()
    messages = [m for ms in redis_messages(redis_url).values() for m in ms]
    executions = sorted(body_of(m)[0][0]["execution"] for m in messages)
    assert executions == ["E-1", "E-2"]
    assert "through Celery" in caplog.text


def test_a_worker_runs_what_was_published_directly_from_many_threads(redis_url: str) -> None:
    """Eight threads publishing at once through one process's channel; a real worker
    (threads pool) takes every message, each once."""
    delivered: list[tuple[str, str]] = []
    bus = bus_on(redis_url, True, delivered)
    ids = [f"E-{t}-{i}" for t in range(8) for i in range(25)]

    def publish(t: int) -> None:
        for i in range(25):
            bus.publish("jobs-manager", f"E-{t}-{i}")

    threads = [threading.Thread(target=publish, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    worker = EmbeddedWorker(bus, ["jobs-manager"], 2).start()
    try:
        end = time.monotonic() + 30
        while len(delivered) < len(ids) and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(0.3)  # a second delivery of any of them would land by now
    finally:
        worker.stop()
        bus.close()
    assert sorted(e for _, e in delivered) == sorted(ids)
