"""The benchmarks' HTTP client: one keep-alive connection per client thread, JSON in
and out, on the standard library's ``http.client``.

The clients share the two cores with the system they measure, so what they cost is
taken from it: ``requests`` spent about 1 ms of CPU per POST here (its session,
adapters, cookie jar and header merging), as much as the Flask echo server answering
it. This one spends a fifth of that. Every side of every benchmark — PipelineJobs,
the Flask echo, Prefect's server — is driven by it, so no side is favoured; the CPU
it takes is still reported ("clients (this script)").

A keep-alive connection the server has just closed (an idle timeout) fails when it
is reused, before any answer: the request is sent once more on a new connection, as
``requests``' pool does. Nothing else is retried here.
"""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

#: What a connection the server closed in the meantime raises when it is reused.
_STALE = (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError)


class Response:
    """What came back: status, headers (lower-case names) and body."""

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code, self.headers, self.content = status, headers, body

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Client:
    """One client thread's connection to one server (``http://host:port``)."""

    def __init__(self, base_url: str, timeout: float = 60.0) -> None:
        parts = urlsplit(base_url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """``url``: a full URL on this server or a path (with its query)."""
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        data = None if body is None else json.dumps(body).encode()
        sent = {"Content-Type": "application/json", **(headers or {})} if data else headers or {}
        for attempt in range(2):
            reused = self._conn is not None
            conn = self._conn or http.client.HTTPConnection(
                self.host, self.port, timeout=self.timeout
            )
            self._conn = conn
            try:
                conn.request(method, target, body=data, headers=sent)
                resp = conn.getresponse()
                content = resp.read()
            except _STALE:
                self.close()
                if attempt or not reused:
                    raise
                continue
            except BaseException:
                self.close()
                raise
            answer = Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, content)
            if answer.headers.get("connection", "").lower() == "close":
                self.close()
            return answer
        raise AssertionError("unreachable")

    def post(self, url: str, json: Any = None, headers: dict[str, str] | None = None) -> Response:
        return self.request("POST", url, json, headers)

    def get(self, url: str, headers: dict[str, str] | None = None) -> Response:
        return self.request("GET", url, None, headers)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
