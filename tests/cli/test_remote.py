"""The HTTP client: one Idempotency-Key per logical request, kept across its retries."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pipelinejobs.cli.remote import Client, ClientError


class Flaky(ThreadingHTTPServer):
    """Answers 503 to the first ``failures`` requests, then success; records them."""

    def __init__(self, failures: int) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.failures = failures
        self.seen: list[tuple[str, str, str | None]] = []


class Handler(BaseHTTPRequestHandler):
    server: Flaky

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        self.server.seen.append((self.command, self.path, self.headers.get("Idempotency-Key")))
        failing = len(self.server.seen) <= self.server.failures
        status = 503 if failing else 200
        body = {"status": "error" if failing else "success", "message": "", "result": {"id": 1}}
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        if failing:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(raw)

    do_GET = do_POST = _answer

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def flaky() -> Iterator[Flaky]:
    server = Flaky(failures=2)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def client(server: Flaky) -> Client:
    return Client(f"http://127.0.0.1:{server.server_address[1]}", "k", backoff=0.01)


def test_a_message_is_retried_with_the_same_idempotency_key(flaky: Flaky) -> None:
    assert client(flaky).request("POST", "/actors/v2/jobs-manager/messages", body={}) == {"id": 1}
    keys = [key for _, _, key in flaky.seen]
    assert len(keys) == 3 and keys[0] and len(set(keys)) == 1


def test_each_logical_request_has_its_own_key(flaky: Flaky) -> None:
    flaky.failures = 0
    http = client(flaky)
    http.request("POST", "/actors/v2/jobs-manager/messages", body={})
    http.request("POST", "/actors/v2/jobs-manager/messages", body={})
    assert len({key for _, _, key in flaky.seen}) == 2


def test_a_read_is_retried(flaky: Flaky) -> None:
    assert client(flaky).request("GET", "/jobs") == {"id": 1}
    assert len(flaky.seen) == 3


def test_a_post_that_is_not_keyed_is_not_repeated(flaky: Flaky) -> None:
    """Making a nonce twice would leave one the caller never saw."""
    with pytest.raises(ClientError, match="503"):
        client(flaky).request("POST", "/actors/v2/jobs-manager/nonces", body={})
    assert len(flaky.seen) == 1 and flaky.seen[0][2] is None


def test_retries_end(flaky: Flaky) -> None:
    flaky.failures = 100
    http = client(flaky)
    http.retries = 2
    with pytest.raises(ClientError, match="503"):
        http.request("GET", "/jobs")
    assert len(flaky.seen) == 3


def test_the_client_prints_nothing_and_its_trace_masks_secrets(
    flaky: Flaky, capsys: pytest.CaptureFixture[str]
) -> None:
    lines: list[str] = []
    http = client(flaky)
    http.trace = lines.append
    assert http.request("GET", "/actors/v2/jobs-manager/nonces/PJ_secret", {"token": "t0k3n"}) == {
        "id": 1
    }
    assert capsys.readouterr() == ("", "")
    assert lines[0].endswith("/actors/v2/jobs-manager/nonces/********?token=********")
    assert [line.split()[1] for line in lines if line.startswith("<")] == ["503", "503", "200"]
    assert sum("retrying" in line for line in lines) == 2
    assert not any("PJ_secret" in line or "t0k3n" in line or "k" == line for line in lines)
