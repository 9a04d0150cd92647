"""The gateway's HTTP conventions: Abaco's envelope, bodies, paging, redaction.

Every response is ``{"status": "success"|"error", "message": ..., "result": ...,
"version": ...}`` — what Abaco answers, so existing clients read it. Errors come from
one place (:func:`error_response`), which looks the exception's class up in
:data:`pipelinejobs.errors.HTTP_STATUS`; nothing else chooses a status code for an error,
and no traceback ever reaches a caller.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flask import Response, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from pipelinejobs import __version__
from pipelinejobs.access import boundary
from pipelinejobs.adapters.store.base import decode_cursor
from pipelinejobs.errors import (
    MalformedMessage,
    PipelineJobsError,
    StoreError,
    UnsupportedMediaType,
    ValidationError,
    http_status,
    retry_after,
)

log = logging.getLogger("pipelinejobs.gateway")

#: Bodies a message route takes. curl's ``--data`` sends form-urlencoded: the seed's
#: examples post JSON that way, so the body is read as JSON whatever of these it says.
MESSAGE_TYPES = ("application/json", "application/x-www-form-urlencoded", "text/plain")
REDACTED = "********"
SECRET_FIELDS = frozenset({"token", "x-nonce", "secret", "admin_secret"})


def envelope(result: Any, message: str = "", status: int = 200) -> tuple[Response, int]:
    return jsonify(
        {"status": "success", "message": message, "result": result, "version": __version__}
    ), status


def error_response(exc: BaseException) -> tuple[Response, int]:
    """The one translation of an exception into an HTTP error.

    An error that means "try again" (:data:`pipelinejobs.errors.RETRY_AFTER`: a
    compare-and-set that ran out, a store or broker that did not answer) says so three
    ways — ``Retry-After``, ``retryable``/``written``/``retry_after`` in the result and
    a sentence in the message — because nothing was written: a client may send the very
    same request again without doing anything twice.
    """
    if isinstance(exc, PipelineJobsError):
        code = http_status(exc)
        detail = {k: v for k, v in exc.to_dict().items() if k != "message"}
        message = exc.message
        wait = retry_after(exc)
        if wait is not None:
            detail.update(retry_after=wait, retryable=True, written=False)
            message = f"{message}; nothing was written, the request may be retried in {wait} s"
            response, code = failure(message, detail, code)
            response.headers["Retry-After"] = str(wait)
            return response, code
    elif isinstance(exc, HTTPException):
        code = exc.code or 500
        detail = {"error": type(exc).__name__}
        message = exc.description or exc.name
        if isinstance(exc, RequestEntityTooLarge):
            limit = current_app.config.get("MAX_CONTENT_LENGTH")
            message = f"the request body is over the limit of {limit} bytes"
        response, code = failure(message, detail, code)
        # Keep what the exception says about the response (a 405's Allow header).
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response, code
    else:
        log.exception("unexpected error on %s %s", request.method, request.path)
        code, detail = 500, {"error": "InternalError"}
        message = "internal error; it has been logged"
    return failure(message, detail, code)


def failure(message: str, result: Any, status: int) -> tuple[Response, int]:
    """An error in Abaco's envelope."""
    body = {"status": "error", "message": message, "result": result, "version": __version__}
    return jsonify(body), status


def read_json_body(*, allow_empty: bool = True) -> Any:
    """The request body as strict JSON (:mod:`pipelinejobs.access.boundary`), refusing other content
    types (415) and anything that is not strict JSON (400, naming the path)."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if allow_empty:
            return {}
        raise MalformedMessage("this route needs a JSON body")
    mimetype = request.mimetype or ""
    if mimetype and mimetype not in MESSAGE_TYPES:
        raise UnsupportedMediaType(
            f"content type {mimetype!r} is not accepted here; send JSON (application/json)",
            allowed=list(MESSAGE_TYPES),
        )
    return boundary.decode(
        raw, max_depth=current_app.config["PIPELINEJOBS"].config.gateway.max_depth
    )


def page_args() -> tuple[int, str | None]:
    """``limit`` (bounded by the configuration) and ``cursor`` of a list request."""
    settings = current_app.config["PIPELINEJOBS"].config.gateway
    raw = request.args.get("limit", str(settings.page_size))
    try:
        limit = int(raw)
    except ValueError:
        raise ValidationError(f"limit must be an integer, not {raw!r}", path="limit") from None
    if not 1 <= limit <= settings.max_page_size:
        raise ValidationError(f"limit must be between 1 and {settings.max_page_size}", path="limit")
    cursor = request.args.get("cursor") or None
    if cursor is not None:
        try:  # a caller's bad cursor is bad input (400), not a store failure (500)
            decode_cursor(cursor)
        except StoreError as exc:
            raise ValidationError(exc.message, path="cursor") from exc
    return limit, cursor


def redact(value: Any) -> Any:
    """A copy of ``value`` with every secret-named field masked."""
    if isinstance(value, Mapping):
        return {k: (REDACTED if k in SECRET_FIELDS and v else redact(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")
