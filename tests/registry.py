"""A read-only image registry on 127.0.0.1, so a real engine's pull can be tested here.

No registry is reachable from these machines, and no registry image can be pulled to
run one. The docker launcher's pull-and-retry (create, 404 "No such image", pull,
create again) needs something to pull from, so this serves the few Registry HTTP
API v2 requests a pull makes — ``GET /v2/``, ``GET|HEAD /v2/<name>/manifests/<ref>``
and ``GET|HEAD /v2/<name>/blobs/<digest>`` — from images saved with ``podman save
--format oci-dir``. It speaks plain HTTP: the engine is told so by the
``registries.conf`` that :func:`registries_conf` writes for it. Every manifest fetched
is counted (:attr:`Registry.pulls`), so a test can tell whether a pull happened.
"""

from __future__ import annotations

import json
import re
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class Registry:
    """Serves ``repositories``: name -> tag -> an OCI image layout directory."""

    def __init__(self) -> None:
        self.repositories: dict[str, dict[str, Path]] = {}
        #: Manifests fetched with GET, by ``name:tag``.
        self.pulls: Counter[str] = Counter()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def add(self, name: str, tag: str, layout: Path) -> str:
        """Serve the image saved in ``layout`` as ``name:tag``; its reference here."""
        self.repositories.setdefault(name, {})[tag] = layout
        return f"{self.host}/{name}:{tag}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    def _manifest(self, name: str, reference: str) -> tuple[bytes, str] | None:
        layout = self.repositories.get(name, {}).get(reference)
        if layout is None:
            return None
        (entry,) = json.loads((layout / "index.json").read_text())["manifests"]
        digest = entry["digest"]
        return (layout / "blobs" / "sha256" / digest.split(":", 1)[1]).read_bytes(), digest

    def _blob(self, name: str, digest: str) -> bytes | None:
        for layout in self.repositories.get(name, {}).values():
            path = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
            if re.fullmatch(r"sha256:[0-9a-f]{64}", digest) and path.is_file():
                return path.read_bytes()
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:  # noqa: N802 - http.server's names
                self.route(head=True)

            def do_GET(self) -> None:  # noqa: N802
                self.route(head=False)

            def route(self, *, head: bool) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/v2/":
                    return self.reply(200, b"{}", "application/json", head=head)
                match = re.fullmatch(r"/v2/(.+)/(manifests|blobs)/([^/]+)", path)
                if match is None:
                    return self.reply(404, b"{}", "application/json", head=head)
                name, kind, reference = match.groups()
                if kind == "manifests":
                    found = registry._manifest(name, reference)
                    if found is None:
                        body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN"}]}).encode()
                        return self.reply(404, body, "application/json", head=head)
                    if not head:
                        registry.pulls[f"{name}:{reference}"] += 1
                    manifest, digest = found
                    media = json.loads(manifest).get(
                        "mediaType", "application/vnd.oci.image.manifest.v1+json"
                    )
                    return self.reply(200, manifest, media, head=head, digest=digest)
                blob = registry._blob(name, reference)
                if blob is None:
                    return self.reply(404, b"{}", "application/json", head=head)
                return self.reply(200, blob, "application/octet-stream", head=head)

            def reply(
                self, status: int, body: bytes, media: str, *, head: bool, digest: str = ""
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", media)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Docker-Distribution-API-Version", "registry/2.0")
                if digest:
                    self.send_header("Docker-Content-Digest", digest)
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        return Handler


def registries_conf(path: Path, host: str) -> Path:
    """A registries.conf for an engine that may pull from ``host`` over plain HTTP
    (and searches nowhere: a short name is never sent to a public registry)."""
    path.write_text(
        "unqualified-search-registries = []\n\n[[registry]]\n"
        f'location = "{host}"\ninsecure = true\n'
    )
    return path
