"""Webhooks (issue 16): what a subscription matches, what a delivery carries and how
a receiver checks it — the rules, without HTTP or a store.

A **subscription** has a URL, a :class:`WebhookFilter` and a secret. Each applied job
event (a record of the ``events`` log) is offered to it; the filter's job fields
(pipeline, run, job, tag) are checked against the job, its event fields (event names,
target states) against the event. A subscription made by a user key only ever sees
its owner's jobs (:func:`matches_job`'s ``owner``): a key cannot watch others' work.

A **delivery** is the event as JSON (:func:`payload`), signed with HMAC-SHA256 of the
exact body under the subscription's secret (:func:`sign`), with a delivery id derived
from the subscription and the event's uuid (:func:`delivery_id`): a redelivery of the
same event to the same subscription carries the same id, so the receiver
de-duplicates on it.

**Which URLs** (:func:`check_url`): ``http`` and ``https`` only, with a host and no
user name or password (they would end up in logs and listings). Private, loopback,
link-local and reserved addresses are refused unless the deployment allows them
(``webhooks.allow_private``: by default allowed in the embedded mode, refused in
production): a webhook is a request the service makes on a caller's behalf, and
pointing it at ``127.0.0.1:6379`` or a cloud metadata address would turn it into a
way into the service's own network (SSRF). A name is checked again on every
delivery against the addresses it resolves to then (:func:`refused_address`),
since DNS can change after the subscription was made.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import random
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pipelinejobs.domain import lifecycle, tags
from pipelinejobs.domain.identifiers import require_type
from pipelinejobs.errors import ValidationError

#: The header holding ``sha256=<hex HMAC-SHA256 of the body>``.
SIGNATURE_HEADER = "X-PipelineJobs-Signature"
#: The header holding the delivery id (also in the body as ``delivery_id``).
DELIVERY_HEADER = "X-PipelineJobs-Delivery"
SCHEMES = ("http", "https")
#: Longest URL accepted (a URL is stored on the subscription and shown in listings).
MAX_URL = 2048
_LABEL = "[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?"
_PORT = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
#: The form of a subscription's URL: http(s)://host[:port][/path or ?query], the host a
#: DNS name or a dotted IPv4 address (IPv6 literals are not taken), printable ASCII.
URL_PATTERN = f"^https?://{_LABEL}(\\.{_LABEL})*(:{_PORT})?([/?][!-~]*)?$"
#: Most values one filter field may list.
MAX_VALUES = 100


@dataclass(frozen=True)
class WebhookFilter:
    """Which events a subscription receives: every field that is set must match
    (an empty field matches anything; a field's values are alternatives)."""

    pipelines: tuple[str, ...] = ()
    runs: tuple[str, ...] = ()
    jobs: tuple[str, ...] = ()
    #: ``key:value`` pairs, as ``/jobs?tag=`` takes them: a job with any of them.
    tags: tuple[str, ...] = ()
    #: Event names (``finish``, ``fail``...).
    events: tuple[str, ...] = ()
    #: States an event leads to (``FINISHED``, ``FAILED``...).
    states: tuple[str, ...] = ()

    FIELDS = ("pipelines", "runs", "jobs", "tags", "events", "states")

    @classmethod
    def parse(cls, raw: Any) -> WebhookFilter:
        """A filter from its JSON form; ValidationError naming the field otherwise."""
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise ValidationError("filter must be a JSON object", path="filter")
        unknown = sorted(set(raw) - set(cls.FIELDS))
        if unknown:
            raise ValidationError(
                f"filter: unknown field {unknown[0]!r}; fields: {', '.join(cls.FIELDS)}",
                path=f"filter.{unknown[0]}",
            )
        values: dict[str, tuple[str, ...]] = {}
        for name in cls.FIELDS:
            items = raw.get(name)
            items = [] if items is None else items
            path = f"filter.{name}"
            if not isinstance(items, list) or len(items) > MAX_VALUES:
                raise ValidationError(f"{path} must be a list of at most {MAX_VALUES}", path=path)
            if not all(isinstance(v, str) and v for v in items):
                raise ValidationError(f"{path} must hold non-empty strings", path=path)
            values[name] = tuple(dict.fromkeys(items))
        for name, kind in (("pipelines", "pipeline"), ("runs", "pipelinejob_run"),
                           ("jobs", "pipelinejob")):  # fmt: skip
            for value in values[name]:
                try:
                    require_type(value.lower(), kind)
                except ValidationError as exc:
                    raise ValidationError(
                        f"filter.{name}: {exc.message}", path=f"filter.{name}"
                    ) from exc
            values[name] = tuple(dict.fromkeys(v.lower() for v in values[name]))
        for name in values["events"]:
            _known(name, lifecycle.Event, "filter.events")
        for name in values["states"]:
            _known(name, lifecycle.State, "filter.states")
        for pair in values["tags"]:
            tags.parse_filter(pair)
        return cls(**values)

    def as_json(self) -> dict[str, list[str]]:
        return {name: list(getattr(self, name)) for name in self.FIELDS if getattr(self, name)}


def _known(name: str, kind: Any, path: str) -> None:
    if name not in {member.value for member in kind}:
        allowed = ", ".join(member.value for member in kind)
        raise ValidationError(f"{path}: unknown {name!r}; one of: {allowed}", path=path)


def matches_job(flt: WebhookFilter, job: Mapping[str, Any], owner: str | None = None) -> bool:
    """Whether ``job`` passes the filter's job fields; ``owner``: the subscription is
    a user key's, which sees only its own jobs."""
    if owner is not None and job.get("owner") != owner:
        return False
    if flt.jobs and job.get("uuid") not in flt.jobs:
        return False
    if flt.pipelines and job.get("pipeline_uuid") not in flt.pipelines:
        return False
    if flt.runs and job.get("run") not in flt.runs:
        return False
    if flt.tags and not set(flt.tags) & set(job.get(tags.PAIRS) or ()):
        return False
    return True


def matches_event(flt: WebhookFilter, event: str, state: str | None) -> bool:
    """Whether an event named ``event`` leading to ``state`` passes the event fields."""
    if flt.events and event not in flt.events:
        return False
    return not (flt.states and state not in flt.states)


def state_after(record: Mapping[str, Any]) -> str | None:
    """The state an event record led to (its ``previous_state`` and name replayed:
    the log keeps where an event came from, the lifecycle says where it went)."""
    name = str(record.get("name") or "")
    if name == lifecycle.Event.CREATE.value:
        return lifecycle.State.CREATED.value
    before = record.get("previous_state")
    if not before:
        return None
    try:
        return lifecycle.next_state(str(before), lifecycle.parse_event(name)).value
    except Exception:  # noqa: BLE001 - a record written under other rules: say nothing
        return None


# -- deliveries ---------------------------------------------------------------------------


def delivery_id(subscription: str, event_uuid: str) -> str:
    """The id a receiver de-duplicates on: the same for every delivery of one event to
    one subscription (32 hex digits)."""
    return hashlib.sha256(f"webhook\x1f{subscription}\x1f{event_uuid}".encode()).hexdigest()[:32]


def payload(subscription: str, record: Mapping[str, Any], job: Mapping[str, Any]) -> dict[str, Any]:
    """What one delivery says: the event (its log record's public fields and the state
    it led to) and the job it happened to."""
    return {
        "delivery_id": delivery_id(subscription, str(record["uuid"])),
        "subscription": subscription,
        "event": {
            "uuid": record["uuid"],
            "name": record.get("name"),
            "date": record.get("date"),
            "seq": record.get("seq"),
            "data": record.get("data") or {},
            "previous_state": record.get("previous_state"),
            "state": state_after(record),
        },
        "job": {
            "uuid": job.get("uuid"),
            "pipeline_uuid": job.get("pipeline_uuid"),
            "run": job.get("run"),
            "owner": job.get("owner"),
            "tags": job.get("tags") or {},
        },
    }


def batch(subscription: str, documents: list[dict[str, Any]]) -> dict[str, Any]:
    """What a delivery of several events says (a subscription with ``batch`` > 1):
    each event's :func:`payload` in order (per job, the log's order), and a batch id
    derived from their delivery ids — a receiver de-duplicates on each item's
    ``delivery_id``, since a repeated batch may hold more or fewer events."""
    ids = "\x1f".join(str(d["delivery_id"]) for d in documents)
    digest = hashlib.sha256(f"webhook-batch\x1f{subscription}\x1f{ids}".encode())
    return {"batch_id": digest.hexdigest()[:32], "subscription": subscription,
            "deliveries": documents}  # fmt: skip


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class Encoded:
    """The bytes :func:`body_of` makes of :func:`payload` and :func:`batch` documents,
    made from parts: an event's ``event`` and ``job`` objects are encoded once and
    reused for every subscription it goes to (ten subscriptions used to encode each
    event ten times). Byte for byte what ``body_of`` gives (the tests compare)."""

    def __init__(self, record: Mapping[str, Any], job: Mapping[str, Any]) -> None:
        whole = payload("", record, job)
        self.event_uuid = str(record["uuid"])
        self.event = whole["event"]
        self._parts = f',"event":{_dumps(whole["event"])},"job":{_dumps(whole["job"])}'

    def item(self, subscription: str) -> tuple[str, str]:
        """(delivery id, the JSON text of this event's delivery to ``subscription``)."""
        ident = delivery_id(subscription, self.event_uuid)
        return (
            ident,
            f'{{"delivery_id":"{ident}"{self._parts},"subscription":{_dumps(subscription)}}}',
        )


def encoded_batch(subscription: str, items: list[tuple[str, str]]) -> tuple[str, bytes]:
    """(batch id, body) of a :func:`batch` of already encoded items."""
    ids = "\x1f".join(ident for ident, _ in items)
    batch_id = hashlib.sha256(f"webhook-batch\x1f{subscription}\x1f{ids}".encode()).hexdigest()[:32]
    text = ",".join(body for _, body in items)
    return batch_id, (
        f'{{"batch_id":"{batch_id}","deliveries":[{text}],"subscription":{_dumps(subscription)}}}'
    ).encode()


def body_of(document: Mapping[str, Any]) -> bytes:
    """The exact bytes delivered and signed (compact, sorted: one body per payload)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def sign(secret: str, body: bytes) -> str:
    """The signature header's value: ``sha256=<hex HMAC-SHA256 of body under secret>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str) -> bool:
    """What a receiver does: recompute and compare in constant time."""
    return hmac.compare_digest(sign(secret, body), header or "")


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """Seconds before retry ``attempt`` (1, 2, ...): exponential from ``base``, at most
    ``cap``, with ±25% jitter so subscriptions failing together do not retry together."""
    delay = min(cap, base * 2 ** max(0, attempt - 1))
    return delay * random.uniform(0.75, 1.25)


# -- URLs ---------------------------------------------------------------------------------


def check_url(url: Any, *, allow_private: bool) -> str:
    """``url`` if a subscription may be made to it; ValidationError (path ``url``)
    saying why not. See the module docstring for the rule."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        raise ValidationError(f"url must be a string of 1 to {MAX_URL} characters", path="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValidationError(f"url is not a URL: {exc}", path="url") from exc
    if parts.scheme not in SCHEMES:
        raise ValidationError(
            f"url must be http or https, not {parts.scheme or 'schemeless'!r}", path="url"
        )
    if not parts.hostname:
        raise ValidationError("url has no host", path="url")
    if parts.username is not None or parts.password is not None:
        raise ValidationError(
            "url may not hold a user name or password (it would be shown in listings); "
            "the receiver checks the signature instead",
            path="url",
        )
    if port == 0:
        raise ValidationError("url: port 0", path="url")
    if not re.match(URL_PATTERN, url):
        raise ValidationError(
            "url must be http(s)://host[:port][/path]: a DNS name or IPv4 address, printable ASCII",
            path="url",
        )
    if not allow_private:
        host = parts.hostname
        if host == "localhost" or host.endswith(".localhost"):
            raise ValidationError(_private(host), path="url")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            address = None  # a name: checked against what it resolves to at delivery
        if address is not None and refused_address([str(address)]):
            raise ValidationError(_private(host), path="url")
    return url


def refused_address(addresses: Iterable[str]) -> str | None:
    """The first address that is not public (private, loopback, link-local, multicast,
    reserved, unspecified), or None when all are public."""
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])
        mapped = getattr(address, "ipv4_mapped", None)
        if mapped is not None:
            address = mapped
        if not address.is_global or address.is_multicast:
            return text
    return None


def _private(host: str) -> str:
    return (
        f"url: {host} is a private, loopback or reserved address, which this deployment "
        f"does not call (webhooks.allow_private; SSRF)"
    )
