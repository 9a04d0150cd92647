"""The notifier (issue 16) against a real HTTP receiver on loopback: every applied
event of the jobs a subscription wants arrives signed, once per delivery id, in
order per job — with notifier executions running on several threads at once,
after a redelivery, through a receiver failing for a while, and until a
subscription that keeps failing is disabled."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.adapters.store.base import Document
from pipelinejobs.domain import webhooks
from pipelinejobs.domain.webhook_cursors import Cursors
from pipelinejobs.runtime.dispatch import Runtime
from tests.support import make_runtime, stub
from tests.webhook_receiver import Receiver, receiver

PIPELINE = {
    "name": "Hooked",
    "components": [{"id": "hooked-0.1.0u1", "inputs": {}, "parameters": {}}],
}
#: run, update, finish after create: four events per job.
WALK = ("run", "update", "finish")
FAST = {"retry_base": 0.001, "retry_cap": 0.01, "timeout": 2.0, "cache_seconds": 0.0,
        "notice_window": 0.0}  # fmt: skip


@pytest.fixture(params=["memory", "sqlite"])
def rt(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Runtime]:
    runtime = make_runtime(tmp_path, request.param, webhooks=dict(FAST))
    yield runtime
    runtime.close()


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as r:
        yield r


def subscribe(
    rt: Runtime,
    hook: Receiver,
    owner: str = "admin0000000",
    role: str = "admin",
    batch: int = 1,
    **filter: Any,
) -> Document:
    made, secret = rt.notices.subscriptions.create(
        {"url": hook.url, "filter": filter, "batch": batch},
        owner=owner, role=role, allow_private=True,
    )  # fmt: skip
    hook.secret = secret
    rt.notices.forget()
    return made


def jobs(
    rt: Runtime, n: int, owner: str = "admin0000000", events: tuple[str, ...] = WALK
) -> list[str]:
    pipeline = rt.pipelines.create(PIPELINE).pipeline["uuid"]
    uuids = []
    for i in range(n):
        job = rt.jobs.create(
            pipeline_uuid=pipeline, linkage=[f"sample.hook.{owner}.{i}"], fields={"owner": owner}
        ).job
        uuids.append(job["uuid"])
    for event in events:
        for uuid in uuids:
            rt.jobs.apply(uuid, event)
    return uuids


def all_in_order(hook: Receiver, uuids: list[str], count: int = 1 + len(WALK)) -> None:
    got = hook.by_job()
    assert sorted(got) == sorted(uuids)
    for uuid in uuids:
        assert got[uuid] == list(range(1, count + 1)), (uuid, got[uuid])


def test_every_event_arrives_signed_once_in_order(rt: Runtime, hook: Receiver) -> None:
    sub = subscribe(rt, hook)
    uuids = jobs(rt, 3)
    stub(rt).join()
    all_in_order(hook, uuids)
    assert len(hook.arrivals) == len(hook.events())  # one thread: no repeats
    first = hook.events()[0]
    assert first["subscription"] == sub["id"]
    assert first["event"]["name"] == "create" and first["event"]["state"] == "CREATED"
    last = hook.events()[-1]
    assert last["event"]["name"] == "finish" and last["event"]["state"] == "FINISHED"
    assert last["delivery_id"] == webhooks.delivery_id(sub["id"], last["event"]["uuid"])
    page = rt.notices.subscriptions.deliveries(sub["id"], limit=500)
    assert len(page.items) == 12 and all(d["status_code"] == 200 for d in page.items)
    assert all(d["error"] is None and d["duration_ms"] >= 0 for d in page.items)


def test_no_subscription_no_notifier_message(rt: Runtime) -> None:
    jobs(rt, 2)
    assert not [a for a, _ in stub(rt).published if a == "notifier"]


def test_the_filter_chooses_the_events(rt: Runtime, hook: Receiver) -> None:
    subscribe(rt, hook, states=["FINISHED"])
    uuids = jobs(rt, 2)
    stub(rt).join()
    assert [(b["job"]["uuid"], b["event"]["name"]) for b in hook.events()] == [
        (u, "finish") for u in uuids
    ]


def test_a_user_subscription_hears_only_of_its_own_jobs(rt: Runtime, hook: Receiver) -> None:
    subscribe(rt, hook, owner="mine00000000", role="user")
    mine = jobs(rt, 2, owner="mine00000000")
    jobs(rt, 2, owner="theirs000000")
    stub(rt).join()
    all_in_order(hook, mine)


def test_concurrent_notifier_executions_deliver_in_order(rt: Runtime, hook: Receiver) -> None:
    """Every notice is queued first, then eight threads deliver them at once: several
    executions work on one job together, racing for its cursor."""
    subscribe(rt, hook)
    uuids = jobs(rt, 10, events=("run", "update", "update", "finish"))
    bus = stub(rt)
    errors: list[BaseException] = []

    def drain() -> None:
        try:
            bus.join()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            errors.append(exc)

    threads = [threading.Thread(target=drain) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    all_in_order(hook, uuids, count=5)
    # A repeat is the same delivery, id and all: nothing new for the receiver.
    assert len(hook.events()) == 50 <= len(hook.arrivals)


def test_a_redelivered_notice_repeats_delivery_ids_only(rt: Runtime, hook: Receiver) -> None:
    sub = subscribe(rt, hook)
    [uuid] = jobs(rt, 1)
    stub(rt).join()
    before = [a.delivery_id for a in hook.arrivals]
    # As if a worker died after posting but before moving the cursor: it is redone.
    Cursors(rt.store).reset(uuid, sub["id"], 2)
    rt.submit("notifier", {"job_uuid": uuid, "seq": 4}, role="admin")
    stub(rt).join()
    assert [a.delivery_id for a in hook.arrivals] == before + before[2:]
    all_in_order(hook, [uuid])


def test_a_failing_receiver_gets_the_retries_then_everything(rt: Runtime, hook: Receiver) -> None:
    sub = subscribe(rt, hook)
    hook.answer = lambda n: 500 if n < 6 else 200
    uuids = jobs(rt, 3)
    stub(rt).join()
    all_in_order(hook, uuids)
    failed = [a for a in hook.arrivals if a.status == 500]
    assert len(failed) == 6
    retries = [e for a, e in stub(rt).published if a == "notifier" and e in stub(rt).delays]
    assert retries, "the retries are delayed messages"
    stored = rt.notices.subscriptions.get(sub["id"])
    assert stored["enabled"] and stored["failures"] == 0
    records = rt.notices.subscriptions.deliveries(sub["id"], limit=500).items
    assert sum(1 for d in records if d["status_code"] == 500 and d["error"] == "HTTP 500") == 6


def test_a_subscription_failing_n_times_is_disabled_with_the_reason(
    tmp_path: Path, hook: Receiver
) -> None:
    rt = make_runtime(tmp_path, "memory", webhooks={**FAST, "max_failures": 4})
    try:
        sub = subscribe(rt, hook)
        hook.answer = lambda n: 500
        jobs(rt, 2)
        stub(rt).join()
        stored = rt.notices.subscriptions.get(sub["id"])
        assert not stored["enabled"]
        assert "4 consecutive failed deliveries" in stored["disabled_reason"]
        assert "HTTP 500" in stored["disabled_reason"]
        assert len(hook.arrivals) == 4
        # Disabled: later events are not even sent to the notifier.
        published = len(stub(rt).published)
        jobs(rt, 1, owner="later0000000")
        assert len(stub(rt).published) == published
    finally:
        rt.close()


def test_retries_stop_after_the_retry_window(tmp_path: Path, hook: Receiver) -> None:
    rt = make_runtime(tmp_path, "memory", webhooks={**FAST, "retry_for": 0.0})
    try:
        sub = subscribe(rt, hook)
        hook.answer = lambda n: 500
        jobs(rt, 1, events=())
        stub(rt).join()
        stored = rt.notices.subscriptions.get(sub["id"])
        assert not stored["enabled"] and "undelivered since" in stored["disabled_reason"]
    finally:
        rt.close()


def test_a_redirect_is_not_followed(rt: Runtime, hook: Receiver) -> None:
    sub = subscribe(rt, hook)
    hook.answer = lambda n: 302 if n == 0 else 200
    [uuid] = jobs(rt, 1, events=())
    stub(rt).join()
    records = rt.notices.subscriptions.deliveries(sub["id"]).items
    assert any("redirects are not followed" in (d["error"] or "") for d in records)
    all_in_order(hook, [uuid], count=1)


def test_production_refuses_a_loopback_receiver_at_delivery(tmp_path: Path, hook: Receiver) -> None:
    """A name checked at subscription time may resolve elsewhere later: the notifier
    checks again before each delivery."""
    rt = make_runtime(tmp_path, "memory", webhooks={**FAST, "allow_private": "false"})
    try:
        sub = subscribe(rt, hook)  # made with allow_private=True, as if DNS changed since
        jobs(rt, 1, events=())
        stub(rt).join()
        assert hook.arrivals == []
        [record] = rt.notices.subscriptions.deliveries(sub["id"]).items[-1:]
        assert "non-public address" in record["error"]
    finally:
        rt.close()


def test_a_lost_notice_is_caught_up_by_the_jobs_next_event(
    rt: Runtime, hook: Receiver, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker down when an event is applied: the event stands, the notice is
    logged as not sent, and the job's next event delivers both, in order."""
    from pipelinejobs.errors import BusUnavailable

    subscribe(rt, hook)
    [uuid] = jobs(rt, 1, events=())
    stub(rt).join()

    def down(*args: Any, **kwargs: Any) -> None:
        raise BusUnavailable("broker down (test)")

    with monkeypatch.context() as patched:
        patched.setattr(rt, "publish", down)
        assert rt.jobs.apply(uuid, "run").applied
    assert "not sent" in caplog.text
    stub(rt).join()
    assert hook.by_job()[uuid] == [1]
    rt.jobs.apply(uuid, "finish")
    stub(rt).join()
    all_in_order(hook, [uuid], count=3)


def test_the_readme_verification_example_accepts_a_delivery(rt: Runtime, hook: Receiver) -> None:
    import re

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text.split("## Webhooks", 1)[1]
    [code] = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # noqa: S102 - the README's own example
    sub = subscribe(rt, hook)
    body = webhooks.body_of({"delivery_id": "x" * 32, "subscription": sub["id"]})
    headers = {"X-PipelineJobs-Signature": webhooks.sign(hook.secret, body)}
    seen: set[str] = set()
    assert namespace["receive"](body, headers, hook.secret, seen)["delivery_id"] == "x" * 32
    assert namespace["receive"](body, headers, hook.secret, seen) is None
    with pytest.raises(PermissionError):
        namespace["receive"](body + b" ", headers, hook.secret, seen)


@pytest.fixture
def gathering(tmp_path: Path) -> Iterator[Runtime]:
    """A runtime whose notice window never ends by itself: the test flushes it."""
    runtime = make_runtime(tmp_path, "sqlite", webhooks={**FAST, "notice_window": 3600.0})
    yield runtime
    runtime.close()


def notices(rt: Runtime) -> list[dict[str, Any]]:
    bus = stub(rt)
    return [rt.executions.get(e)["message"] for a, e in bus.published if a == "notifier"]


def test_events_in_one_window_make_one_notice_for_every_job(
    gathering: Runtime, hook: Receiver
) -> None:
    rt = gathering
    subscribe(rt, hook)
    uuids = jobs(rt, 3)
    assert notices(rt) == []  # gathered, not sent
    rt.notices.flush()
    [notice] = notices(rt)
    assert notice == {"jobs": [{"job_uuid": u, "seq": 4} for u in uuids]}
    rt.notices.flush()  # nothing new: nothing sent
    assert len(notices(rt)) == 1
    stub(rt).join()
    all_in_order(hook, uuids)
    # The next events open a new window; closing the runtime sends what it holds.
    rt.jobs.apply(uuids[0], "index")
    rt.close()
    assert notices(rt)[-1] == {"jobs": [{"job_uuid": uuids[0], "seq": 5}]}


def test_a_batch_subscription_gets_several_jobs_events_per_post(
    gathering: Runtime, hook: Receiver
) -> None:
    rt = gathering
    sub = subscribe(rt, hook, batch=5)
    uuids = jobs(rt, 3)  # 12 events
    rt.notices.flush()
    stub(rt).join()
    assert [len(a.body["deliveries"]) for a in hook.arrivals] == [5, 5, 2]
    all_in_order(hook, uuids)
    records = rt.notices.subscriptions.deliveries(sub["id"]).items
    assert sorted(r["events"] for r in records) == [2, 5, 5]
    assert {r["delivery_id"] for r in records} == {a.delivery_id for a in hook.arrivals}
    items = [i["delivery_id"] for r in records for i in r["items"]]
    assert sorted(items) == sorted(e["delivery_id"] for e in hook.events())


def test_a_failing_batch_receiver_gets_retries_then_everything(
    gathering: Runtime, hook: Receiver
) -> None:
    rt = gathering
    sub = subscribe(rt, hook, batch=50)
    hook.answer = lambda n: 500 if n < 3 else 200
    uuids = jobs(rt, 4)
    rt.notices.flush()
    stub(rt).join()
    all_in_order(hook, uuids)
    assert [a.status for a in hook.arrivals[:3]] == [500, 500, 500]
    retried = [e for a, e in stub(rt).published if a == "notifier" and e in stub(rt).delays]
    assert retried, "each job left undelivered got a delayed retry"
    assert rt.notices.subscriptions.get(sub["id"])["failures"] == 0


def test_a_notice_naming_a_deleted_job_delivers_the_others(rt: Runtime, hook: Receiver) -> None:
    subscribe(rt, hook)
    [uuid] = jobs(rt, 1)
    stub(rt).join()
    before = len(hook.arrivals)
    gone = "1073f4ff-c2b9-5190-bd9a-e6a406d90000"
    rt.jobs.apply(uuid, "index")
    rt.submit("notifier", {"jobs": [{"job_uuid": gone, "seq": 3}, {"job_uuid": uuid, "seq": 5}]},
              role="admin")  # fmt: skip
    stub(rt).join()
    assert len(hook.arrivals) == before + 1
    all_in_order(hook, [uuid], count=5)
