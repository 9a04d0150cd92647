"""A callback receiver for launcher tests: stands where the jobs-manager's URL would be.

Watched launchers report over HTTP, as a remote backend would; this server records
what they post (query and body) so a test can assert on it after joining the
threads that wait on the launches' supervisors.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class Capture:
    """An HTTP server on 127.0.0.1 that records the callbacks it receives."""

    def __init__(self) -> None:
        self.calls: list[tuple[dict[str, str], dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                query = {k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()}
                outer.calls.append((query, body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def statuses(self) -> list[str]:
        return [query["status"] for query, _ in self.calls]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
