"""The OpenAPI description of the bulk-action routes (:mod:`pipelinejobs.gateway.bulk_api`):
their paths and result schemas, kept beside the other read routes' by
:func:`pipelinejobs.gateway.openapi.document`. The ``bulk`` message that starts one is
the jobs-manager's (``pipelinejob_bulk.json``), documented with its other messages."""

from __future__ import annotations

from typing import Any

from pipelinejobs.domain import bulk
from pipelinejobs.gateway import openapi_schemas as oas
from pipelinejobs.gateway.openapi_paths import Operations, _ok, _path, _responses
from pipelinejobs.gateway.parameters import ABACO_ID

STRING = {"type": "string"}
COUNT = {"type": "integer", "minimum": 0}
NEXT = {"type": ["string", "null"], "description": "the cursor of the next page; null at the end"}


def paths(builder: Operations) -> dict[str, Any]:
    bulk_id = _path("execution_id", "the bulk action's id (its message's execution id)", ABACO_ID)
    return {
        "/bulk": {
            "get": builder.op(
                "bulk.list_bulk",
                "Bulk actions, newest first",
                _responses(_ok("BulkList"), "400 401 403 503"),
            )
        },
        "/bulk/{execution_id}": {
            "get": builder.op(
                "bulk.get_bulk",
                "A bulk action's status, its per-job outcomes counted and a page of them",
                _responses(_ok("Bulk"), "400 401 403 404 503"),
                path=(bulk_id,),
            )
        },
    }


def _outcome(**extra: Any) -> dict[str, Any]:
    return oas._object(
        ["uuid", "outcome"],
        uuid={"type": ["string", "null"]},
        outcome={
            "type": "string",
            "enum": [bulk.PENDING, bulk.RUNNING, bulk.DONE, bulk.REFUSED, bulk.FAILED],
        },  # fmt: skip
        message=STRING,
        **extra,
    )


def schemas() -> dict[str, dict[str, Any]]:
    summary = {
        "id": STRING,
        "operation": {"type": "string", "enum": list(bulk.OPERATIONS)},
        "filter": oas.ref("JsonValue"),
        "reason": {"type": ["string", "null"]},
        "owner": {"type": ["string", "null"]},
        "created": STRING,
    }
    return {
        "BulkSummary": oas._object(
            ["id", "operation", "filter", "total", "created"],
            **summary,
            total=COUNT,
            set=oas.ref("JsonValue"),
            remove=oas.ref("JsonValue"),
        ),
        "BulkList": oas._object(
            ["bulk", "next"], bulk={"type": "array", "items": oas.ref("BulkSummary")}, next=NEXT
        ),
        "Bulk": oas._object(
            ["id", "status", "total", "counts", "skipped", "outcomes", "next"],
            **summary,
            status={
                "type": "string",
                "enum": ["SENDING", "RUNNING", "COMPLETE", "FAILED", "REFUSED"],
            },
            error=STRING,
            total=COUNT,
            counts=oas._object(
                ["done", "errors", "skipped", "running", "pending"],
                done=COUNT,
                errors=COUNT,
                skipped=COUNT,
                running=COUNT,
                pending=COUNT,
            ),
            skipped={"type": "array", "items": _outcome()},
            outcomes={
                "type": "array",
                "items": _outcome(
                    execution=STRING,
                    state=STRING,
                    attempt={"type": "integer"},
                    tags=oas.ref("JsonValue"),
                ),
            },
            next=NEXT,
        ),
    }
