"""URL parameters: declared once per route, enforced on every request, documented.

Each route's query parameters are :class:`Param` declarations here, with a JSON
Schema holding their pattern, enum and range. :func:`check_request` runs before every
route (a ``before_request`` hook) and refuses, with a 400 naming the parameter, any
value its declaration does not allow; :mod:`pipelinejobs.gateway.openapi` writes the same
declarations into the OpenAPI document. One table for both is what keeps the server
accepting exactly what the document allows — a schemathesis run checks that they do.

Values arrive as text and are read by their schema's type before they are checked:
a boolean is ``true`` or ``false`` and nothing else, an integer is decimal digits
with an optional sign. Every parameter (declared or not) goes through
:func:`pipelinejobs.access.boundary.check_params`: no NUL, no lone surrogate, no over-long value,
and a parameter not declared multi-valued may be given only once. A route the table
does not know (a newer blueprint's) is left to check its own parameters.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from typing import Any

from flask import current_app, request
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import best_match

from pipelinejobs.access.boundary import MAX_PARAM, check_params
from pipelinejobs.access.nonces import PREFIX as NONCE_PREFIX
from pipelinejobs.domain import lineage, runs, validation
from pipelinejobs.domain.job_log import PAGE as HISTORY_PAGE
from pipelinejobs.errors import InvalidCredential, PipelineJobsError, ValidationError
from pipelinejobs.gateway.abaco import MAX_OFFSET as MAX_SKIP
from pipelinejobs.runtime.executions import ALPHABET, COMPLETE, ERROR, ID_LENGTH, RUNNING, SUBMITTED

#: A plain-text parameter value: anything printable enough for a URL, never NUL.
TEXT = {"type": "string", "minLength": 1, "maxLength": MAX_PARAM, "pattern": "^[^\\x00]*$"}
BOOLEAN = {"type": "boolean"}
#: An execution's or actor's Abaco-style id: 13 base-62 characters.
ABACO_ID = {"type": "string", "pattern": f"^[{re.escape(ALPHABET)}]{{{ID_LENGTH}}}$"}
EXECUTION_STATUSES = (SUBMITTED, RUNNING, COMPLETE, ERROR)
_INTEGER = re.compile(r"-?[0-9]{1,19}")
#: What a value of each ``format`` looks like, for error messages.
FORMATS = {
    "date-time": "an RFC 3339 date-time with its offset, such as 2026-01-31T12:00:00Z "
    "(a '+' in a URL is written %2B)",
}
#: A tag filter, ``key:value`` (pipelinejobs.domain.tags).
TAG_FILTER = "^[A-Za-z0-9_.-]{1,64}:[^\\x00-\\x1f\\x7f]{0,256}$"
#: Largest byte offset into a job's log (a seek past it overflows).
MAX_OFFSET = 2**62


@dataclass(frozen=True)
class Param:
    """One URL parameter of a route. ``schema`` may ``$ref`` a file of ``schemas/``
    (``{"$ref": "pipelinejob_uuid.json"}``); ``multi``: it may be repeated
    (``?state=RUNNING&state=FAILED``) and its schema is then an array's."""

    name: str
    schema: dict[str, Any]
    description: str
    required: bool = False
    multi: bool = False
    deprecated: bool = False
    #: What a value it does not allow raises: a credential that is malformed is an
    #: invalid credential (401), like one that is unknown.
    error: type[PipelineJobsError] = ValidationError


def ref(name: str) -> dict[str, str]:
    """A reference to the schema file ``schemas/<name>.json``."""
    return {"$ref": f"{name}.json"}


def _page(settings: Any) -> tuple[Param, ...]:
    return (
        Param(
            "limit",
            {"type": "integer", "minimum": 1, "maximum": settings.max_page_size},
            f"page size (default {settings.page_size})",
        ),
        Param(
            "cursor",
            {
                "type": "string",
                "minLength": 1,
                "maxLength": MAX_PARAM,
                "pattern": "^[A-Za-z0-9_-]+$",
                "contentEncoding": "base64url",
                "contentMediaType": "application/json",
            },
            "where the page starts: the previous page's `next`, as given (an opaque "
            "value; any other is refused)",
        ),
    )


#: A nonce in the URL, on an actor's routes (the ``nonce`` security scheme). One that
#: is malformed is refused as an invalid credential even beside a bearer key, which
#: it would otherwise lose to unseen.
X_NONCE = Param(
    "x-nonce",
    {"type": "string", "pattern": f"^{NONCE_PREFIX}[A-Za-z0-9_-]{{24}}$"},
    "a nonce of this actor, instead of a bearer key",
    error=InvalidCredential,
)
SYNC = (
    Param("_abaco_synchronous", BOOLEAN, "wait for the execution and answer with it"),
    Param("sync", BOOLEAN, "the same as _abaco_synchronous"),
)
#: agavepy's ``sendMessage(environment={...})`` sends each key as a URL parameter of
#: its own and, besides, ``environment=<key>`` once per key: taken, and ignored.
ENVIRONMENT = Param(
    "environment",
    {"type": "array", "items": TEXT},
    "ignored: agavepy repeats here the names of the parameters its environment= sends",
    multi=True,
)

#: The URL parameters each actor's ``parse`` reads from a message's URL (Abaco passes
#: the others through to the actor, so they are not refused).
ACTOR_PARAMS: dict[str, tuple[Param, ...]] = {
    "jobs-manager": (
        Param("uuid", ref("pipelinejob_uuid"), "the job (URL-parameter form of an event)"),
        Param("name", ref("pipelinejob_eventname"), "the event (with uuid)"),
        Param("event", ref("pipelinejob_eventname"), "the same as name"),
        Param("token", ref("update_token"), "the job's update token"),
        Param(
            "status",
            TEXT,
            "an Agave job status (with uuid): RUNNING, FINISHED, FAILED... (without event "
            "or name the body, if any, must be an Agave job callback, agave_job_callback; "
            "it is attached to the event as data, status taken from here when it has none)",
        ),
    ),
    "jobs-indexer": (
        Param("uuid", ref("pipelinejob_uuid"), "the job to index (if the body has none)"),
        Param(
            "name",
            {"type": "string", "enum": ["index", "indexed"]},
            "index (the default) or indexed",
        ),
        Param("level", ref("processing_level"), "processing level of the indexed files"),
        Param("token", ref("update_token"), "the job's update token"),
        Param("fixity", BOOLEAN, "record each file's SHA-256"),
    ),
    "pipelines-manager": (
        Param("uuid", ref("pipeline_uuid"), "the pipeline a definition updates (with token)"),
        Param("token", ref("update_token"), "the pipeline's update token: the body updates it"),
    ),
    "launcher-proxy": (),
}


def _offset(what: str) -> Param:
    """Abaco's ``offset`` (pipelinejobs.gateway.abaco: read past, so bounded)."""
    return Param(
        "offset",
        {"type": "integer", "minimum": 0, "maximum": MAX_SKIP},
        f"{what} to skip first, from the cursor when one is given (Abaco's paging; at "
        f"most {MAX_SKIP:,}: beyond, follow each page's next)",
    )


#: The lineage routes' parameters (pipelinejobs.domain.lineage).
LINEAGE = (
    Param(
        "direction",
        {"type": "string", "enum": list(lineage.DIRECTIONS)},
        "up (what it came from), down (what was made from it) or both (the default)",
    ),
    Param(
        "depth",
        {"type": "integer", "minimum": 1, "maximum": lineage.MAX_DEPTH},
        f"edges from the start, at most {lineage.MAX_DEPTH} (default {lineage.DEFAULT_DEPTH})",
    ),
)


@cache  # settings are frozen: one table per deployment and actor
def _table(settings: Any, actor: str | None) -> dict[str, tuple[Param, ...]]:
    page = _page(settings)
    level = Param("level", ref("processing_level"), "only files of this processing level")
    return {
        "actors.post_message": (X_NONCE, *SYNC, ENVIRONMENT, *ACTOR_PARAMS.get(actor or "", ())),
        "actors.list_executions": (
            Param(
                "status",
                {"type": "string", "enum": list(EXECUTION_STATUSES)},
                "only executions in this status",
            ),
            *page,
            _offset("executions"),
            X_NONCE,
        ),
        "actors.get_execution": (X_NONCE,),
        "actors.get_logs": (X_NONCE,),
        "actors.create_nonce": (),
        "actors.list_nonces": (),
        "actors.get_nonce": (),
        "actors.delete_nonce": (),
        # Abaco v2 discovery and results, Tapis v3 tenancy (pipelinejobs.gateway.abaco_api).
        "abaco.list_actors": (page[0], _offset("actors")),
        "abaco.get_actor": (X_NONCE,),
        "abaco.list_aliases": (page[0], _offset("aliases")),
        "abaco.get_alias": (),
        "abaco.list_workers": (X_NONCE,),
        "abaco.get_results": (X_NONCE,),
        "abaco.list_tenants": (),
        "abaco.list_sites": (),
        "read.list_pipelines": (
            Param(
                "status",
                {"type": "string", "enum": ["active", "disabled", "retired"]},
                "only pipelines in this status",
            ),
            *page,
        ),
        "read.get_pipeline": (),
        "read.list_jobs": (
            Param(
                "state",
                {"type": "array", "minItems": 1, "items": ref("pipelinejob_statename")},
                "only jobs in one of these states (repeat the parameter for several)",
                multi=True,
            ),
            Param("pipeline_uuid", ref("pipeline_uuid"), "only jobs of this pipeline"),
            Param(
                "linkage",
                {"type": "array", "minItems": 1, "items": TEXT},
                "only jobs linked to one of these catalog ids (repeatable)",
                multi=True,
            ),
            Param(
                "child_of",
                {"type": "array", "minItems": 1, "items": TEXT},
                "the former name of linkage (ignored when linkage is given)",
                multi=True,
                deprecated=True,
            ),
            Param(
                "updated_since",
                {"type": "string", "format": "date-time", "maxLength": 64},
                "only jobs changed at or after this RFC 3339 date-time (with its offset; "
                "a '+' sent unescaped arrives as a space and is read as '+'); oldest "
                "change first",
            ),
            Param(
                "tag",
                {"type": "string", "minLength": 3, "maxLength": 321, "pattern": TAG_FILTER},
                "only jobs with this tag, as key:value (one tag per request)",
            ),
            Param(
                "owner",
                {"type": "string", "pattern": "^(me|system|[0-9a-f]{12})$"},
                "only jobs created by this key (its listed id, as keys list shows it; "
                "me: the caller's own key, or its nonce's owner; system: the service's own)",
            ),
            Param("run", ref("pipelinejob_run_uuid"), "only jobs launched in this run"),
            Param("counts", BOOLEAN, "add the number of matching jobs in each state"),
            *page,
        ),
        "runs.list_runs": (
            Param("pipeline_uuid", ref("pipeline_uuid"), "only runs of this pipeline"),
            Param(
                "priority",
                {"type": "string", "enum": ["low", "medium", "high"]},
                "only runs of this priority",
            ),
            Param(
                "tag",
                {"type": "string", "minLength": 3, "maxLength": 321, "pattern": TAG_FILTER},
                "only runs with this tag, as key:value (one tag per request)",
            ),
            Param(
                "owner",
                {"type": "string", "pattern": "^(me|system|[0-9a-f]{12})$"},
                "only runs created by this key (its listed id; me: the caller's own key)",
            ),
            Param(
                "status",
                {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "string", "enum": list(runs.STATUSES)},
                },
                "only runs in one of these statuses (repeatable), derived from their jobs' "
                "states: not stored, so runs are read newest first until a page is found or "
                f"{runs.SCAN_PER_RUN} per run asked for (at most {runs.MAX_SCAN:,}) were "
                "read; a page may come back short or empty with a `next` going on from there",
                multi=True,
            ),
            *page,
        ),
        "runs.get_run": (),
        "runs.graph": (),
        "runs.run_jobs": (
            Param(
                "state",
                {"type": "array", "minItems": 1, "items": ref("pipelinejob_statename")},
                "only the run's jobs in one of these states (repeatable)",
                multi=True,
            ),
            *page,
        ),
        "read.get_job": (),
        "read.job_history": (
            Param(
                "after",
                {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
                "entries after this many (default 0: from the first); a page's `next`",
            ),
            Param(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": HISTORY_PAGE},
                f"entries per page (default and most {HISTORY_PAGE})",
            ),
        ),
        "read.job_files": (level, *page),
        "read.job_log": (
            Param(
                "offset",
                {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET},
                "byte offset to read from (default 0)",
            ),
        ),
        "files.list_files": (
            Param("job", ref("pipelinejob_uuid"), "the job whose files to list", required=True),
            level,
            Param("present", BOOLEAN, "only files found (true) or vanished (false)"),
            *page,
        ),
        "files.get_file": (),
        "bulk.list_bulk": (
            Param(
                "owner",
                {"type": "string", "pattern": "^(me|system|[0-9a-f]{12})$"},
                "only bulk actions sent with this key (its listed id; me: the caller's own)",
            ),
            *page,
        ),
        "bulk.get_bulk": (
            Param("errors", BOOLEAN, "only the per-job outcomes that failed or were refused"),
            *page,
        ),
        "webhooks.create_webhook": (),
        "webhooks.list_webhooks": (
            Param(
                "owner",
                {"type": "string", "pattern": "^(me|system|[0-9a-f]{12})$"},
                "admin keys: only this key's subscriptions (its listed id; me: the caller's "
                "own); other keys always see their own only",
            ),
            *page,
        ),
        "webhooks.get_webhook": (),
        "webhooks.delete_webhook": (),
        "webhooks.webhook_deliveries": page,
        "lineage.job_lineage": LINEAGE,
        "lineage.file_lineage": LINEAGE,
        "healthz": (),
        "openapi": (),
        "metrics.metrics_page": (),
    }


def route_params(
    endpoint: str, settings: Any, actor: str | None = None
) -> tuple[Param, ...] | None:
    """The query parameters of the route ``endpoint`` (a Flask endpoint name); for
    ``actors.post_message``, those of the actor ``actor``. None for a route this
    table does not know."""
    return _table(settings, actor).get(endpoint)


@cache
def _validator(schema_json: str) -> Draft202012Validator:
    schema = validation.inline_leaves(json.loads(schema_json), validation.schema_documents())
    made: Draft202012Validator = validation.Draft202012(schema, format_checker=FormatChecker())
    return made


def _json_type(schema: dict[str, Any]) -> Any:
    if "type" in schema:
        return schema["type"]
    return validation.inline_leaves(schema, validation.schema_documents()).get("type", "string")


def _typed(text: str, kind: Any, name: str) -> Any:
    """``text`` read as a value of JSON type ``kind``; a 400 naming ``name`` if it
    is not one (``True``, ``1``, ``yes`` are not booleans; ``1.0``, `` 1`` not integers)."""
    if kind == "boolean":
        if text in ("true", "false"):
            return text == "true"
        raise ValidationError(
            f"URL parameter {name!r} must be true or false, not {text!r}",
            path=name,
            allowed=["true", "false"],
        )
    if kind == "integer":
        if _INTEGER.fullmatch(text):
            return int(text)
        raise ValidationError(f"URL parameter {name!r} must be an integer, not {text!r}", path=name)
    return text


def parse(param: Param, values: list[str]) -> Any:
    """The value of ``param`` from its texts, checked against its schema (400 naming it)."""
    if param.multi:
        kind = _json_type(param.schema.get("items", {}))
        value: Any = [_typed(v, kind, param.name) for v in values]
    else:
        value = _typed(values[0], _json_type(param.schema), param.name)
    validator = _validator(json.dumps(param.schema, sort_keys=True))
    error = best_match(validator.iter_errors(value))
    if error is not None:
        where = "".join(f"[{p}]" for p in error.absolute_path)
        detail = {"allowed": error.validator_value} if error.validator == "enum" else {}
        reason = error.message
        if error.validator == "format":
            reason = f"{error.instance!r} is not {FORMATS.get(error.validator_value, 'valid')}"
        raise param.error(
            f"URL parameter {param.name!r}{where}: {reason}", path=param.name, **detail
        )
    return value


def check_request() -> None:
    """Refuse (400) a request whose URL parameters its route does not allow.

    A ``before_request`` hook: it runs before authentication, so a malformed request
    spends no nonce use, and before the route, which may then trust the values.
    """
    gateway = current_app.config["PIPELINEJOBS"]
    endpoint = request.endpoint or ""
    actor = None
    if endpoint == "actors.post_message":
        actor = gateway.runtime.actor((request.view_args or {}).get("actor", "")).alias
    params = route_params(endpoint, gateway.config.gateway, actor)
    if params is None:
        return
    check_params(request.args, multi=[p.name for p in params if p.multi])
    for param in params:
        values = request.args.getlist(param.name)
        if values:
            parse(param, values)
        elif param.required:
            raise ValidationError(
                f"URL parameter {param.name!r} is required: {param.description}", path=param.name
            )
