"""The gateway over HTTP: one small client, standard library only.

:class:`Client` is what the CLI's remote commands and :mod:`pipelinejobs.client.managed`
use to talk to a running gateway. It returns the envelope's ``result`` (``call``: the
whole answer) and raises :class:`ClientError` with the gateway's status and message
otherwise. It prints nothing: a ``trace`` callable, when given, is told each request
and its answer in one line (the CLI's ``-v``), with secret URL parameters masked.
"""

from __future__ import annotations

import itertools
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable
from typing import Any

from pipelinejobs.errors import PipelineJobsError

#: URL parameters whose values a trace never shows (credentials, update tokens).
SECRET_PARAMS = frozenset({"token", "x-nonce", "nonce", "key", "secret", "password"})


class ClientError(PipelineJobsError):
    """The gateway answered with an error (its status and message are kept; ``answer``
    is its whole JSON answer, when it sent one)."""

    answer: Any = None


class Client:
    """Calls the gateway; returns the envelope's ``result``.

    Every message POST carries an ``Idempotency-Key`` — a fresh one per logical
    request unless the caller names it, kept across its retries — so a request whose
    answer was lost can be sent again without applying it twice. Requests that are
    safe to repeat — reads, deletes and those keyed POSTs — are retried on connection
    errors and 5xx answers, with exponential back-off (a ``Retry-After`` the gateway
    sends is honoured); any other request is retried only when it never reached the
    server (connection refused).
    """

    def __init__(
        self,
        url: str,
        key: str | None = None,
        timeout: float = 60.0,
        *,
        retries: int = 4,
        backoff: float = 0.5,
        trace: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.key = key
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        #: Told each request and its outcome, one line each (never a body or a secret).
        self.trace = trace

    def request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
        *,
        idempotency_key: str | None = None,
    ) -> Any:
        """The ``result`` of ``method path?params`` with ``body`` as JSON.
        ``idempotency_key``: the key a message POST is sent with (default: a new one)."""
        return (self.call(method, path, params, body, idempotency_key=idempotency_key) or {}).get(
            "result"
        )

    def call(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
        *,
        idempotency_key: str | None = None,
    ) -> Any:
        """The gateway's whole answer (Abaco's envelope: ``status``, ``message``,
        ``result``, ``version``) to ``method path?params``, as :meth:`request`."""
        raw, _ = self._send(method, path, params, body, idempotency_key)
        return json.loads(raw or b"null")

    def text(self, path: str, params: dict[str, Any] | None = None) -> tuple[bytes, Any]:
        """A plain-text GET (a job's log): the body and the response's headers."""
        return self._send("GET", path, params, None)

    def _send(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        body: Any,
        idempotency_key: str | None = None,
    ) -> tuple[bytes, Any]:
        query = urllib.parse.urlencode(params or {}, doseq=True)
        target = f"{self.url}{path}" + (f"?{query}" if query else "")
        data = json.dumps(body, allow_nan=False).encode() if body is not None else None
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        if method == "POST" and path.endswith("/messages"):
            headers["Idempotency-Key"] = idempotency_key or uuid.uuid4().hex
        safe = method in ("GET", "HEAD", "DELETE") or "Idempotency-Key" in headers
        for attempt in itertools.count(1):
            req = urllib.request.Request(target, data=data, method=method, headers=headers)
            started = time.monotonic()
            self._trace(f"> {method} {_shown(self.url + path, params)}")
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                    self._trace(f"< {resp.status} {resp.reason} ({_ms(started)})")
                    return resp.read(), resp.headers
            except urllib.error.HTTPError as exc:
                self._trace(f"< {exc.code} {exc.reason} ({_ms(started)})")
                try:
                    answer = json.loads(exc.read() or b"null")
                    message = answer.get("message") or exc.reason
                except (ValueError, AttributeError):
                    answer, message = None, exc.reason
                finally:
                    exc.close()
                error = ClientError(
                    f"{exc.code}: {message}", status=exc.code, result=(answer or {}).get("result")
                )
                error.answer = answer
                if not (safe and exc.code >= 500 and attempt <= self.retries):
                    raise error from exc
                self._pause(attempt, exc.headers.get("Retry-After"))
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                unsent = isinstance(reason, ConnectionRefusedError)
                self._trace(f"< no answer: {reason} ({_ms(started)})")
                if not ((safe or unsent) and attempt <= self.retries):
                    raise ClientError(f"cannot reach {self.url}: {exc}") from exc
                self._pause(attempt, None)
        raise AssertionError("unreachable")  # pragma: no cover

    def _trace(self, line: str) -> None:
        if self.trace is not None:
            self.trace(line)

    def _pause(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff * 2 ** (attempt - 1)
        try:
            delay = max(delay, min(float(retry_after or 0), 30.0))
        except ValueError:
            pass
        self._trace(f"  retrying in {delay:g} s (attempt {attempt + 1} of {self.retries + 1})")
        time.sleep(delay)


def _shown(target: str, params: dict[str, Any] | None) -> str:
    """The URL as a trace shows it: a nonce's id in the path (it is the nonce) and the
    values of secret parameters replaced."""
    target = re.sub(r"(/nonces/)[^/?]+", r"\1********", target)
    shown = {
        k: ("********" if k.lower() in SECRET_PARAMS else v) for k, v in (params or {}).items()
    }
    query = urllib.parse.urlencode(shown, doseq=True, safe="*")
    return f"{target}?{query}" if query else target


def _ms(started: float) -> str:
    return f"{(time.monotonic() - started) * 1000:.0f} ms"
