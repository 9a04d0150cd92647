"""The OpenAPI description of the webhook routes (:mod:`pipelinejobs.gateway.webhooks_api`):
their paths, the request body and the result schemas, added to the document by
:func:`pipelinejobs.gateway.openapi.document` as the bulk routes' are."""

from __future__ import annotations

from typing import Any

from pipelinejobs.domain import lifecycle
from pipelinejobs.domain.webhooks import MAX_VALUES, WebhookFilter
from pipelinejobs.gateway import openapi_schemas as oas
from pipelinejobs.gateway.openapi_paths import Operations, _body, _ok, _path, _responses
from pipelinejobs.gateway.parameters import TAG_FILTER

STRING = {"type": "string"}
NULLABLE = {"type": ["string", "null"]}
NEXT = {"type": ["string", "null"], "description": "the cursor of the next page; null at the end"}
ID = {"type": "string", "pattern": "^wh-[0-9a-f]{16}$"}


def _values(items: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "maxItems": MAX_VALUES, "items": items}


def paths(builder: Operations) -> dict[str, Any]:
    sub_id = _path("webhook_id", "the subscription's id", ID)
    body = _body(oas.ref("webhook_subscription"), True, "the subscription: url, filter, secret")
    return {
        "/webhooks": {
            "post": builder.op(
                "webhooks.create_webhook",
                "Subscribe a URL to job state changes; the answer holds the secret, once",
                _responses(_ok("WebhookCreated", "created"), "400 401 403 413 415 503", "201"),
                body=body,
            ),
            "get": builder.op(
                "webhooks.list_webhooks",
                "Webhook subscriptions, newest first (an admin's: all; others: their own)",
                _responses(_ok("WebhookList"), "400 401 403 503"),
            ),
        },
        "/webhooks/{webhook_id}": {
            "get": builder.op(
                "webhooks.get_webhook",
                "One subscription, whether it is enabled and why not (never its secret)",
                _responses(_ok("Webhook"), "400 401 403 404 503"),
                path=(sub_id,),
            ),
            "delete": builder.op(
                "webhooks.delete_webhook",
                "Remove a subscription",
                _responses(
                    _ok(oas._object(["id", "deleted"], id=STRING, deleted={"type": "boolean"})),
                    "400 401 403 404 503",
                ),
                path=(sub_id,),
            ),  # fmt: skip
        },
        "/webhooks/{webhook_id}/enable": {
            "post": builder.op(
                "webhooks.enable_webhook",
                "Enable a disabled subscription again: failures to 0; each job's deliveries "
                "resume from where they stopped at its next event",
                _responses(_ok("Webhook"), "400 401 403 404 413 415 503"),
                path=(sub_id,),
            )
        },
        "/webhooks/{webhook_id}/deliveries": {
            "get": builder.op(
                "webhooks.webhook_deliveries",
                "A subscription's delivery attempts, newest first",
                _responses(_ok("WebhookDeliveries"), "400 401 403 404 503"),
                path=(sub_id,),
            )
        },
    }


def schemas() -> dict[str, dict[str, Any]]:
    flt: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "description": "every field set must match; a field's values are alternatives",
        "properties": {
            "pipelines": _values(oas.ref("pipeline_uuid")),
            "runs": _values(oas.ref("pipelinejob_run_uuid")),
            "jobs": _values(oas.ref("pipelinejob_uuid")),
            "tags": _values({"type": "string", "pattern": TAG_FILTER, "description": "key:value"}),
            "events": _values({"type": "string", "enum": [e.value for e in lifecycle.Event]}),
            "states": _values({"type": "string", "enum": [s.value for s in lifecycle.State]}),
        },
    }
    assert set(flt["properties"]) == set(WebhookFilter.FIELDS)
    subscription = {
        "id": ID,
        "url": STRING,
        "filter": flt,
        "description": STRING,
        "owner": STRING,
        "role": STRING,
        "enabled": {"type": "boolean"},
        "batch": {
            "type": "integer",
            "minimum": 1,
            "maximum": 500,
            "description": "most events per POST; 1: one event per POST",
        },
        "failures": {"type": "integer", "minimum": 0},
        "disabled_reason": NULLABLE,
        "enabled_at": STRING,
        "created": STRING,
        "updated": STRING,
    }
    required = ["id", "url", "filter", "owner", "enabled", "failures", "created"]
    delivery = oas._object(
        ["id", "subscription", "date", "delivery_id", "job_uuid", "seq"],
        id=STRING,
        subscription=ID,
        date=STRING,
        delivery_id=STRING,
        job_uuid=STRING,
        seq={"type": "integer"},
        event=NULLABLE,
        state=NULLABLE,
        status_code={"type": ["integer", "null"]},
        error=NULLABLE,
        duration_ms={"type": "number"},
        attempt={"type": "integer"},
        execution=STRING,
        events={"type": "integer", "minimum": 1, "description": "events the POST carried"},
        items={
            "type": "array",
            "description": "a batch's events (subscriptions with batch > 1)",
            "items": oas._object(
                ["delivery_id", "job_uuid", "seq"],
                delivery_id=STRING,
                job_uuid=STRING,
                seq={"type": "integer"},
                event=NULLABLE,
            ),
        },
    )
    return {
        "Webhook": oas._object(required, **subscription),
        "WebhookCreated": oas._object([*required, "secret"], **subscription, secret=STRING),
        "WebhookList": oas._object(
            ["webhooks", "next"], webhooks={"type": "array", "items": oas.ref("Webhook")}, next=NEXT
        ),
        "WebhookDelivery": delivery,
        "WebhookDeliveries": oas._object(
            ["deliveries", "next"],
            deliveries={"type": "array", "items": oas.ref("WebhookDelivery")},
            next=NEXT,
        ),
    }
