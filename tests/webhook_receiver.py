"""A webhook receiver for tests (not a test module): a real HTTP server on loopback, in
a thread, that checks each delivery's signature and keeps what it got.

``answer`` decides each request's status (200 by default; a test makes it 500 for a
while). :meth:`Receiver.events` is what a careful receiver keeps: the deliveries
whose signature verified, de-duplicated by delivery id, in the order of their first
arrival — a batch (a subscription's ``batch`` > 1) counts as its items, in order.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pipelinejobs.domain import webhooks


@dataclass
class Arrival:
    delivery_id: str
    signature_ok: bool
    body: dict[str, Any]
    status: int


@dataclass
class Receiver:
    url: str
    secret: str = ""
    answer: Callable[[int], int] = lambda n: 200
    arrivals: list[Arrival] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def events(self) -> list[dict[str, Any]]:
        """Accepted (2xx), verified deliveries, once per delivery id, first-arrival order."""
        seen: set[str] = set()
        out: list[dict[str, Any]] = []
        with self.lock:
            arrivals = list(self.arrivals)
        for arrival in arrivals:
            assert arrival.signature_ok, arrival
            batched = "batch_id" in arrival.body
            key = "batch_id" if batched else "delivery_id"
            assert arrival.body[key] == arrival.delivery_id
            items = arrival.body["deliveries"] if batched else [arrival.body]
            for item in items if arrival.status < 300 else ():
                if item["delivery_id"] not in seen:
                    seen.add(item["delivery_id"])
                    out.append(item)
        return out

    def by_job(self) -> dict[str, list[int]]:
        """Each job's delivered event sequence numbers, in the order received."""
        jobs: dict[str, list[int]] = {}
        for body in self.events():
            jobs.setdefault(body["job"]["uuid"], []).append(body["event"]["seq"])
        return jobs

    def wait_for(self, condition: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"receiver: not reached in {timeout} s"
            time.sleep(0.02)


@contextmanager
def receiver(secret: str = "") -> Iterator[Receiver]:
    """A receiver listening on 127.0.0.1 (a free port) until the block ends."""
    state = Receiver(url="")

    connections: set[socket.socket] = set()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as most receivers are

        def setup(self) -> None:
            super().setup()
            with state.lock:
                connections.add(self.connection)

        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            signature = self.headers.get(webhooks.SIGNATURE_HEADER) or ""
            with state.lock:
                status = state.answer(len(state.arrivals))
                state.arrivals.append(
                    Arrival(
                        self.headers.get(webhooks.DELIVERY_HEADER) or "",
                        webhooks.verify(state.secret, body, signature),
                        json.loads(body),
                        status,
                    )
                )
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.url = f"http://127.0.0.1:{server.server_port}/hook"
    state.secret = secret
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        with state.lock:  # kept-alive connections: end them, their threads close them
            for conn in connections:
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        thread.join(5)
