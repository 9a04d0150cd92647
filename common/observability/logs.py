"""The process log: one timestamped line per record, human or JSON, secrets masked.

Every long-running command — ``pipelinejobs serve``, ``gateway`` (gunicorn) and
``worker`` (Celery) — calls :func:`configure` once at start, which puts one handler
on the root logger (stderr) with one of two formatters:

* **human** (the default)::

      2026-11-30T07:20:01.123Z INFO  POST /actors/v2/jobs-manager/messages?uuid=1073…
        …&token=******** 200 4.1 ms 127.0.0.1 key:3f9a0c21d4e7
      2026-11-30T07:20:01.130Z INFO  jobs-manager exec=5kPqY0xTQm2Zr job=1073… COMPLETE in
        3.2 ms
      2026-11-30T07:20:03.002Z WARNING celery.worker.consumer: Connection to broker lost…

  (each one line; wrapped here)

  time (UTC, milliseconds), level, then the message; a record from anywhere but the
  request and execution logs also names its logger.
* **json**: one object per line — ``time``, ``level``, ``logger``, ``message``, and
  every structured field the record carries (``event``: ``request`` or
  ``execution``; ``method``, ``path``, ``status``, ``duration_ms``, ``remote``;
  ``actor``, ``execution``, ``job``, ``outcome``, ``attempt``...), plus
  ``traceback`` when there is one.

Structured fields travel as the standard library's ``extra`` — the code that logs
(:mod:`pipelinejobs.gateway.request_log`, the runtime's ExecutionLogging middleware)
imports nothing from here; this module only decides how records look.

Secrets never reach the output: whatever a record says — ours, Celery's, gunicorn's,
a traceback — is passed through :func:`scrub` after formatting, which masks a bearer
credential and the value of any ``token``, ``x-nonce``, ``secret``, ``password`` or
``authorization`` (or a name ending so: ``update_token``) written as ``name=value``,
``name: value`` or ``"name": "value"``.
The request log does not rely on it: it never logs a query string or a route
parameter holding a secret unmasked in the first place.

**Celery** configures logging itself when a worker starts unless some receiver is
connected to its ``setup_logging`` signal; :func:`configure` connects one, so the
worker and its prefork pool processes (which inherit the handler on fork) print
through this handler only — nothing twice, nothing swallowed, and ``print`` is not
redirected. At INFO, the lines that repeat what an execution's own outcome line
says — Celery's "Task … received/succeeded" and the actors' own lines, which are
kept on each execution (``pipelinejobs logs ACTOR ID``) — are shown at DEBUG only.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import IO, Any

from pipelinejobs.config import LOG_FORMATS, LOG_LEVELS, LoggingSettings

#: What a masked secret reads as (the same mask as the gateway's answers).
MASK = "********"
#: Loggers whose INFO lines repeat an execution's outcome line: WARNING and up unless
#: the level is DEBUG.
CHATTY = ("pipelinejobs.actor", "celery.app.trace", "celery.worker.strategy")
#: Loggers whose records are already one structured line: the human format does not
#: prefix them with the logger's name.
STRUCTURED = ("pipelinejobs.http", "pipelinejobs.delivery")

#: Names whose values are secrets wherever they appear (a URL parameter, a header, a
#: JSON field, a ``key=value`` in a message): ``token``, ``x-nonce``, ``admin_secret``,
#: ``PIPELINEJOBS_JOB_TOKEN``, ``password``, ``Authorization``...
_SECRET_NAMES = r"[\w-]*(?:token|secret|password|nonce(?:_id)?)|authorization"
_SECRETS = (
    # Authorization: Bearer <key> (also "bearer <key>" inside any text).
    (re.compile(r"(?i)\b(bearer)(\s+)[^\s\"',;]+"), rf"\1\2{MASK}"),
    # name=value, name: value, "name": "value", 'name': 'value'
    (
        re.compile(
            rf"(?i)(?<![\w-])((?:{_SECRET_NAMES})[\"']?\s*(?:=|:)\s*[\"']?)(?!bearer\s)[^\s&\"',;}}\]]+"
        ),
        rf"\1{MASK}",
    ),
)
_SECRET_NAME = re.compile(_SECRET_NAMES, re.IGNORECASE)
#: Every text either pattern above can match holds one of these words (matched the
#: same way, by the same engine): most lines hold none and skip both substitutions.
_MAYBE_SECRET = re.compile(r"(?i)bearer|token|secret|password|nonce|authorization")
#: The attributes every LogRecord has: anything else on a record came as ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message",
    "asctime",
    "taskName",
}


def scrub(text: str) -> str:
    """``text`` with every secret it shows masked (see the module docstring)."""
    if not _MAYBE_SECRET.search(text):
        return text
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


def is_secret_name(name: str) -> bool:
    """Whether a field or parameter called ``name`` holds a secret (``token``,
    ``x-nonce``, ``admin_secret``, ``Authorization``...)."""
    return _SECRET_NAME.fullmatch(name) is not None


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {
            str(k): (MASK if v and is_secret_name(str(k)) else _scrub_value(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_scrub_value(v) for v in value]
    return value


#: The last second formatted (one ``strftime`` a second, not one a line).
_second: tuple[int, str] = (-1, "")


def utc_time(created: float) -> str:
    """``2026-11-30T07:20:01.123Z``: RFC 3339, UTC, milliseconds."""
    global _second  # noqa: PLW0603 - a one-entry cache; a tuple swap is atomic
    seconds = int(created)
    millis = int((created - seconds) * 1000)
    cached = _second
    if cached[0] != seconds:
        cached = _second = (seconds, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)))
    return f"{cached[1]}.{millis:03d}Z"


def fields_of(record: logging.LogRecord) -> dict[str, Any]:
    """The structured fields a record was given as ``extra``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class HumanFormatter(logging.Formatter):
    """``<time> <LEVEL> [<logger>: ]<message>``, a traceback on the lines below."""

    def format(self, record: logging.LogRecord) -> str:
        head = f"{utc_time(record.created)} {record.levelname:<5} "
        if not record.name.startswith(STRUCTURED):
            head += f"{record.name}: "
        text = head + record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return scrub(text)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": utc_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in fields_of(record).items():
            out.setdefault(key, value)
        if record.exc_info:
            out["traceback"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(_scrub_value(out), default=str, ensure_ascii=False)


FORMATTERS: dict[str, type[logging.Formatter]] = {"human": HumanFormatter, "json": JsonFormatter}


class _Handler(logging.StreamHandler[IO[str]]):
    """Ours: :func:`configure` replaces it instead of adding a second one."""


def configure(
    settings: LoggingSettings | None = None,
    *,
    format: str | None = None,  # noqa: A002 - the setting's name
    level: str | None = None,
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Send every log record of this process to ``stream`` (stderr) in the chosen
    format, at the chosen level; returns the handler. Called again, it replaces its
    own handler (never adds a second); handlers others put on the root logger (a test
    runner's) are left alone."""
    settings = settings or LoggingSettings()
    chosen_format = (format or settings.format).lower()
    chosen_level = (level or settings.level).upper()
    if chosen_format not in LOG_FORMATS:
        raise ValueError(f"log format {chosen_format!r}; formats: {', '.join(LOG_FORMATS)}")
    if chosen_level not in LOG_LEVELS:
        raise ValueError(f"log level {chosen_level!r}; levels: {', '.join(LOG_LEVELS)}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(stream if stream is not None else sys.stderr)
    handler.setFormatter(FORMATTERS[chosen_format]())
    root.addHandler(handler)
    numeric = logging.getLevelName(chosen_level)
    root.setLevel(numeric)
    for name in CHATTY:
        logging.getLogger(name).setLevel(
            logging.NOTSET if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
        )
    _hold_celery_back()
    return handler


def configured() -> bool:
    """Whether :func:`configure` has put its handler on the root logger."""
    return any(isinstance(h, _Handler) for h in logging.getLogger().handlers)


def _keep_our_logging(**_: Any) -> None:
    """Connected to Celery's ``setup_logging``: its mere presence tells a starting
    worker that logging is configured (so Celery adds no handler of its own and does
    not redirect stdout/stderr)."""


def _hold_celery_back() -> None:
    try:
        from celery import signals
    except ImportError:  # pragma: no cover - celery is a dependency
        return
    signals.setup_logging.connect(_keep_our_logging, weak=False, dispatch_uid="pipelinejobs")
