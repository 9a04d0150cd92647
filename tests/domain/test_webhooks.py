"""Webhook rules (issue 16): filters, signatures, delivery ids, the URL rule (SSRF),
and the subscriptions' store (secret never public, failures counted, disabling)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from pipelinejobs.adapters.store.memory import MemoryStore
from pipelinejobs.domain import webhooks
from pipelinejobs.domain.subscriptions import Subscriptions
from pipelinejobs.domain.webhooks import WebhookFilter
from pipelinejobs.errors import ValidationError

JOB = {
    "uuid": "1073f4ff-c2b9-5190-bd9a-e6a406d9796a",
    "pipeline_uuid": "1064aaf1-459c-5e42-820d-b822aa4b3990",
    "run": "126aaaaa-0000-5000-8000-000000000000",
    "owner": "abc123abc123",
    "tag_pairs": ["team:blue", "size:big"],
}


def test_an_empty_filter_matches_every_event() -> None:
    flt = WebhookFilter.parse({})
    assert webhooks.matches_job(flt, JOB)
    assert webhooks.matches_event(flt, "finish", "FINISHED")


@pytest.mark.parametrize(
    ("raw", "job", "event"),
    [
        ({"jobs": [JOB["uuid"]]}, True, True),
        ({"jobs": ["1073f4ff-c2b9-5190-bd9a-000000000000"]}, False, True),
        ({"pipelines": [JOB["pipeline_uuid"]]}, True, True),
        ({"runs": ["126bbbbb-0000-5000-8000-000000000000"]}, False, True),
        ({"runs": ["126AAAAA-0000-5000-8000-000000000000"]}, True, True),
        ({"tags": ["team:red", "team:blue"]}, True, True),
        ({"tags": ["team:red"]}, False, True),
        ({"events": ["fail", "finish"]}, True, True),
        ({"events": ["run"]}, True, False),
        ({"states": ["FINISHED"]}, True, True),
        ({"states": ["FAILED"]}, True, False),
    ],
)
def test_each_filter_field(raw: dict, job: bool, event: bool) -> None:
    flt = WebhookFilter.parse(raw)
    assert webhooks.matches_job(flt, JOB) is job
    assert webhooks.matches_event(flt, "finish", "FINISHED") is event


def test_a_user_subscription_sees_only_its_owners_jobs() -> None:
    flt = WebhookFilter.parse({})
    assert webhooks.matches_job(flt, JOB, owner="abc123abc123")
    assert not webhooks.matches_job(flt, JOB, owner="someoneelse0")


@pytest.mark.parametrize(
    ("raw", "path"),
    [
        ("x", "filter"),
        ({"colour": ["red"]}, "filter.colour"),
        ({"events": ["explode"]}, "filter.events"),
        ({"states": ["DONE"]}, "filter.states"),
        ({"jobs": [1]}, "filter.jobs"),
        ({"jobs": ["a"] * 101}, "filter.jobs"),
        ({"jobs": "1073f4ff-c2b9-5190-bd9a-e6a406d9796a"}, "filter.jobs"),
        ({"jobs": ["1064aaf1-459c-5e42-820d-b822aa4b3990"]}, "filter.jobs"),
        ({"pipelines": ["nope"]}, "filter.pipelines"),
    ],
)
def test_a_bad_filter_names_its_field(raw: object, path: str) -> None:
    with pytest.raises(ValidationError) as caught:
        WebhookFilter.parse(raw)
    assert caught.value.detail.get("path") == path


def test_the_signature_is_hmac_sha256_of_the_body() -> None:
    body = webhooks.body_of({"b": 1, "a": [1, 2]})
    assert body == b'{"a":[1,2],"b":1}'
    expected = hmac.new(b"s3cret-s3cret-s3cret", body, hashlib.sha256).hexdigest()
    header = webhooks.sign("s3cret-s3cret-s3cret", body)
    assert header == f"sha256={expected}"
    assert webhooks.verify("s3cret-s3cret-s3cret", body, header)
    assert not webhooks.verify("s3cret-s3cret-s3cret", body + b" ", header)
    assert not webhooks.verify("other-other-other-", body, header)


def test_a_delivery_id_is_the_same_for_a_redelivery_only() -> None:
    first = webhooks.delivery_id("wh-1", "108aaaa")
    assert first == webhooks.delivery_id("wh-1", "108aaaa")
    assert first != webhooks.delivery_id("wh-2", "108aaaa")
    assert first != webhooks.delivery_id("wh-1", "108aaab")
    record = {"uuid": "108aaaa", "name": "finish", "seq": 3, "previous_state": "RUNNING"}
    document = webhooks.payload("wh-1", record, JOB)
    assert document["delivery_id"] == first
    assert document["event"]["state"] == "FINISHED"
    assert document["job"]["uuid"] == JOB["uuid"]


def test_the_state_an_event_led_to() -> None:
    assert webhooks.state_after({"name": "create"}) == "CREATED"
    assert webhooks.state_after({"name": "run", "previous_state": "CREATED"}) == "RUNNING"
    assert webhooks.state_after({"name": "update", "previous_state": "RUNNING"}) == "RUNNING"
    assert webhooks.state_after({"name": "finish", "previous_state": "RETIRED"}) is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://example.org/x", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("gopher://example.org", "http or https"),
        ("http://", "no host"),
        ("https://user:pw@example.org/", "user name or password"),
        ("http://127.0.0.1:6379/", "private"),
        ("http://localhost/", "private"),
        ("http://169.254.169.254/latest/meta-data", "private"),
        ("http://10.0.0.5/", "private"),
        ("http://[::1]/", "IPv4 address"),  # IPv6 literals are not taken at all
        ("http://a_b.example.org/", "DNS name"),
        ("http://example.org/\u00e9", "printable ASCII"),
        ("http://0.0.0.0/", "private"),
        ("http://example.org:99999/", "not a URL"),
    ],
)
def test_urls_refused_in_production(url: str, why: str) -> None:
    with pytest.raises(ValidationError) as caught:
        webhooks.check_url(url, allow_private=False)
    assert why in caught.value.message
    assert caught.value.detail.get("path") == "url"


def test_loopback_is_allowed_when_configured_and_public_hosts_always() -> None:
    assert webhooks.check_url("http://127.0.0.1:8080/hook", allow_private=True)
    assert webhooks.check_url("https://hooks.example.org/x", allow_private=False)
    assert webhooks.refused_address(["93.184.216.34"]) is None
    assert webhooks.refused_address(["93.184.216.34", "192.168.1.1"]) == "192.168.1.1"
    assert webhooks.refused_address(["::1"]) == "::1"
    assert webhooks.refused_address(["::ffff:127.0.0.1"]) == "::ffff:127.0.0.1"
    assert webhooks.refused_address(["fe80::1%eth0"]) == "fe80::1%eth0"


def test_retry_delays_grow_and_stop_at_the_cap() -> None:
    delays = [webhooks.retry_delay(n, 10, 3600) for n in range(1, 20)]
    assert 7.5 <= delays[0] <= 12.5
    assert all(d <= 3600 * 1.25 for d in delays)
    assert delays[-1] >= 3600 * 0.75


def test_a_subscription_never_shows_its_secret_and_disables_after_n_failures() -> None:
    subs = Subscriptions(MemoryStore())
    made, secret = subs.create(
        {"url": "http://127.0.0.1:9/x", "filter": {"events": ["finish"]}},
        owner="abc123abc123",
        role="user",
        allow_private=True,
    )
    assert "secret" not in made and len(secret) == 64
    given, mine = subs.create(
        {"url": "http://127.0.0.1:9/y", "secret": "a-secret-of-mine-1234"},
        owner="abc123abc123",
        role="user",
        allow_private=True,
    )
    assert mine == "a-secret-of-mine-1234" and "secret" not in given
    with pytest.raises(ValidationError) as caught:
        subs.create({"url": "http://x.org", "secret": "short"}, owner="o", role="user",
                    allow_private=True)  # fmt: skip
    assert caught.value.detail.get("path") == "secret"
    sub = subs.get(made["id"])
    for _ in range(2):
        sub = subs.failed(sub, "HTTP 500", 3)
    assert sub["enabled"] and sub["failures"] == 2
    subs.succeeded(sub)
    sub = subs.get(made["id"])
    assert sub["failures"] == 0
    for _ in range(3):
        sub = subs.failed(sub, "HTTP 500", 3)
    assert not sub["enabled"]
    assert "3 consecutive failed deliveries" in sub["disabled_reason"]
    assert "HTTP 500" in sub["disabled_reason"]
    assert [s["id"] for s in subs.enabled()] == [given["id"]]


def test_the_request_schema_states_the_same_rules() -> None:
    """schemas/webhook_subscription.json (the OpenAPI request body, and the server's
    backstop) is written from these constants: they must not drift apart."""
    from pipelinejobs.domain import validation

    schema = validation.schema_documents()["webhook_subscription"]
    assert schema["properties"]["url"]["pattern"] == webhooks.URL_PATTERN
    assert schema["properties"]["url"]["maxLength"] == webhooks.MAX_URL
    assert set(schema["properties"]["filter"]["properties"]) == set(WebhookFilter.FIELDS)
    for field in schema["properties"]["filter"]["properties"].values():
        assert field["maxItems"] == webhooks.MAX_VALUES


@pytest.mark.parametrize(
    "data",
    [{}, {"b": 1, "a": [1, 2.5, None, True]}, {"text": 'é ☃ \u2028 "quoted" \\ </script>'}],
)
def test_encoded_deliveries_are_the_same_bytes_as_the_documents(data: dict) -> None:
    """Each event is encoded once for all subscriptions; what is posted must be what
    ``body_of`` makes of the documented payload — one item and a batch."""
    record = {"uuid": "108e0000-0000-5000-8000-000000000001", "name": "update",
              "date": "2026-11-30T11:20:01.123Z", "seq": 3, "data": data,
              "previous_state": "RUNNING"}  # fmt: skip
    job = {**JOB, "tags": {"z": "1", "a": "ü"}}
    encoded = webhooks.Encoded(record, job)
    ident, text = encoded.item("wh-0123456789abcdef")
    document = webhooks.payload("wh-0123456789abcdef", record, job)
    assert ident == document["delivery_id"]
    assert text.encode() == webhooks.body_of(document)
    other = webhooks.Encoded({**record, "uuid": "108e0000-0000-5000-8000-000000000002"}, job)
    items = [encoded.item("wh-0123456789abcdef"), other.item("wh-0123456789abcdef")]
    batch_id, body = webhooks.encoded_batch("wh-0123456789abcdef", items)
    documents = [
        document,
        webhooks.payload("wh-0123456789abcdef", {**record, "uuid": other.event_uuid}, job),
    ]
    expected = webhooks.batch("wh-0123456789abcdef", documents)
    assert body == webhooks.body_of(expected) and batch_id == expected["batch_id"]


@pytest.mark.parametrize("batch", [0, 501, -1, "10", 2.5, True, None])
def test_a_subscriptions_batch_is_refused_outside_1_to_500(batch: object) -> None:
    subs = Subscriptions(MemoryStore())
    with pytest.raises(ValidationError) as caught:
        subs.create({"url": "http://x.org/h", "batch": batch}, owner="o", role="user",
                    allow_private=False)  # fmt: skip
    assert caught.value.detail.get("path") == "batch" and "1" in caught.value.message
    made, _ = subs.create({"url": "http://x.org/h", "batch": 500}, owner="o", role="user",
                          allow_private=False)  # fmt: skip
    assert made["batch"] == 500
    made, _ = subs.create({"url": "http://x.org/h", "batch": 243.0}, owner="o", role="user",
                          allow_private=False)  # fmt: skip
    assert made["batch"] == 243 and isinstance(made["batch"], int)  # JSON's 243.0 is 243
    assert subs.create({"url": "http://x.org/h"}, owner="o", role="user",
                       allow_private=False)[0]["batch"] == 1  # fmt: skip
