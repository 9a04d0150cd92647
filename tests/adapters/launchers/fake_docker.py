"""A fake Docker Engine: the few Engine API endpoints the docker launcher's SDK calls use.

No Docker engine runs where these tests run, so the launcher is tested against the
real SDK (``docker.DockerClient``) talking HTTP to this server. It answers as the
Engine API v1.43 documents, for exactly the calls made by ``containers.create``
(with the SDK's pull-and-retry on "No such image"), ``images.pull``,
``Container.start/wait/kill/logs/remove``:

================================= ============================================
POST   /containers/create         404 "No such image" unless the image is present
GET    /containers/{id}/json      the container's inspect document (id or prefix)
POST   /containers/{id}/start     runs the image's :class:`Program`
POST   /containers/{id}/wait      headers at once, body when the container exits
                                  (as the engine does); or all at the end; or
                                  the connection dropped (an engine gone away)
GET    /containers/{id}/logs      stdout/stderr in the multiplexed stream format
POST   /containers/{id}/kill      exit code 137; 409 if not running
DELETE /containers/{id}           409 if running without ``force``
POST   /images/create             a pull: chunked JSON progress, image now present
GET    /images/{name}/json        the image's inspect document
================================= ============================================

Every request is recorded (:attr:`FakeEngine.calls`) for tests to assert on; a
request to anything else is answered 404 and recorded in :attr:`FakeEngine.unknown`.
"""

from __future__ import annotations

import json
import re
import struct
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

VERSION = "1.43"
#: Longest a wait blocks on a container nobody stops (a failing test must not hang).
WAIT_CAP = 30.0


@dataclass
class Program:
    """What a fake container of an image does when started."""

    exit_code: int = 0
    stdout: bytes = b""
    stderr: bytes = b""
    #: Runs until killed (to test maxRunTime).
    forever: bool = False
    #: Starting it fails with this engine message (HTTP 500).
    start_error: str | None = None


@dataclass
class Container:
    id: str
    config: dict[str, Any]
    program: Program
    state: str = "created"
    exit_code: int | None = None
    exited: threading.Event = field(default_factory=threading.Event)

    def stop(self, code: int) -> None:
        self.state, self.exit_code = "exited", code
        self.exited.set()


@dataclass
class Call:
    method: str
    #: Without the ``/v1.43`` prefix.
    path: str
    query: dict[str, str]
    body: Any


def normalise(ref: str) -> str:
    """``alpine`` and ``alpine:latest`` are one image (as far as this fake cares)."""
    if "@" in ref or ":" in ref.rsplit("/", 1)[-1]:
        return ref
    return f"{ref}:latest"


class FakeEngine:
    """The fake engine, listening on 127.0.0.1; ``url`` is its ``tcp://`` address."""

    def __init__(self, *, headers_first: bool = True) -> None:
        #: Whether wait sends its headers before the container exits (the real engine
        #: does; the SDK then times out reading the body rather than the headers).
        self.headers_first = headers_first
        #: Whether wait drops the connection without an answer (the engine went away).
        self.drop_waits = False
        self.calls: list[Call] = []
        self.unknown: list[Call] = []
        #: Images present on the engine, normalised.
        self.images: set[str] = set()
        #: Images a pull cannot find; any other pull succeeds.
        self.unpullable: set[str] = set()
        #: What containers of an image do; the default program exits 0 at once.
        self.programs: dict[str, Program] = {}
        self.containers: dict[str, Container] = {}
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"tcp://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self) -> None:
        for container in list(self.containers.values()):
            container.exited.set()
        self.server.shutdown()
        self.server.server_close()

    def requested(self, method: str, pattern: str) -> list[Call]:
        """The calls whose method matches and whose path matches ``pattern`` (a regex)."""
        return [c for c in self.calls if c.method == method and re.fullmatch(pattern, c.path)]

    def find(self, ref: str) -> Container | None:
        """The container ``ref`` names: its id, or a prefix of one (as the engine does)."""
        found = [c for cid, c in self.containers.items() if cid.startswith(ref)]
        return found[0] if len(found) == 1 else None

    # -- the endpoints ---------------------------------------------------------------------

    def create(self, call: Call) -> tuple[int, Any]:
        image = call.body["Image"]
        if normalise(image) not in self.images:
            return 404, {"message": f"No such image: {image}"}
        program = self.programs.get(image, Program())
        container = Container(uuid.uuid4().hex + uuid.uuid4().hex, call.body, program)
        self.containers[container.id] = container
        return 201, {"Id": container.id, "Warnings": []}

    def inspect(self, container: Container) -> tuple[int, Any]:
        config = {k: v for k, v in container.config.items() if k != "HostConfig"}
        return 200, {
            "Id": container.id,
            "Name": f"/fake-{container.id[:6]}",
            "Image": "sha256:" + "0" * 64,
            "Config": {"Tty": False, **config},
            "HostConfig": container.config.get("HostConfig", {}),
            "State": {
                "Status": container.state,
                "Running": container.state == "running",
                "ExitCode": container.exit_code or 0,
            },
        }

    def start(self, container: Container) -> tuple[int, Any]:
        if container.program.start_error:
            return 500, {"message": container.program.start_error}
        container.state = "running"
        if not container.program.forever:
            container.stop(container.program.exit_code)
        return 204, None

    def kill(self, container: Container) -> tuple[int, Any]:
        if container.state != "running":
            return 409, {"message": f"Container {container.id} is not running"}
        container.stop(137)
        return 204, None

    def remove(self, container: Container, query: dict[str, str]) -> tuple[int, Any]:
        if container.state == "running" and query.get("force") != "True":
            return 409, {"message": "cannot remove a running container: stop it or use force"}
        container.stop(container.exit_code if container.exit_code is not None else 137)
        del self.containers[container.id]
        return 204, None

    def logs(self, container: Container) -> bytes:
        """Docker's multiplexed stream: per frame, [stream, 0, 0, 0, size (big-endian)]."""
        out = b""
        for stream, data in ((1, container.program.stdout), (2, container.program.stderr)):
            if data:
                out += struct.pack(">BxxxL", stream, len(data)) + data
        return out

    def pull(self, query: dict[str, str]) -> tuple[int, Any]:
        name, tag = query.get("fromImage", ""), query.get("tag", "latest")
        ref = f"{name}{'@' if tag.startswith('sha256:') else ':'}{tag}"
        if ref in self.unpullable:
            return 404, {
                "message": f"pull access denied for {name}, repository does not exist "
                "or may require 'docker login'"
            }
        self.images.add(normalise(ref))
        return 200, None

    # -- HTTP ------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        engine = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802 - http.server's names
                self.route("GET")

            def do_POST(self) -> None:  # noqa: N802
                self.route("POST")

            def do_DELETE(self) -> None:  # noqa: N802
                self.route("DELETE")

            def log_message(self, *args: object) -> None:
                pass

            def route(self, method: str) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                call = Call(
                    method,
                    unquote(parts.path).removeprefix(f"/v{VERSION}"),
                    {k: v[0] for k, v in parse_qs(parts.query).items()},
                    json.loads(raw) if raw else None,
                )
                with engine.lock:
                    engine.calls.append(call)
                try:
                    self.dispatch(call)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a wait that timed out)

            def dispatch(self, call: Call) -> None:
                path, method = call.path, call.method
                if not self.path.startswith(f"/v{VERSION}/"):
                    return self.reply(400, {"message": "client version not supported"})
                if method == "POST" and path == "/containers/create":
                    return self.reply(*engine.create(call))
                if method == "POST" and path == "/images/create":
                    status, body = engine.pull(call.query)
                    if status != 200:
                        return self.reply(status, body)
                    return self.chunked(
                        [b'{"status":"Pulling fs layer"}\r\n', b'{"status":"Pull complete"}\r\n']
                    )
                match = re.fullmatch(r"/images/(.+)/json", path)
                if method == "GET" and match:
                    name = normalise(match.group(1))
                    if name not in engine.images:
                        return self.reply(404, {"message": f"No such image: {name}"})
                    return self.reply(200, {"Id": "sha256:" + "0" * 64, "RepoTags": [name]})
                match = re.fullmatch(r"/containers/([0-9a-f]+)(/\w+)?", path)
                if not match:
                    engine.unknown.append(call)
                    return self.reply(404, {"message": "page not found"})
                container = engine.find(match.group(1))
                if container is None:
                    return self.reply(404, {"message": f"No such container: {match.group(1)}"})
                action = (method, match.group(2) or "")
                if action == ("GET", "/json"):
                    return self.reply(*engine.inspect(container))
                if action == ("POST", "/start"):
                    return self.reply(*engine.start(container))
                if action == ("POST", "/kill"):
                    return self.reply(*engine.kill(container))
                if action == ("DELETE", ""):
                    return self.reply(*engine.remove(container, call.query))
                if action == ("GET", "/logs"):
                    return self.reply(
                        200, engine.logs(container), "application/vnd.docker.multiplexed-stream"
                    )
                if action == ("POST", "/wait"):
                    return self.wait(container)
                engine.unknown.append(call)
                return self.reply(404, {"message": "page not found"})

            def wait(self, container: Container) -> None:
                if engine.drop_waits:
                    self.close_connection = True
                    return
                if engine.headers_first:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    self.wfile.flush()
                container.exited.wait(WAIT_CAP)
                body = {"StatusCode": container.exit_code, "Error": None}
                if engine.headers_first:
                    self.write_chunks([json.dumps(body).encode() + b"\n"])
                else:
                    self.reply(200, body)

            def reply(self, status: int, body: Any, content_type: str = "") -> None:
                data = b"" if body is None else body
                if not isinstance(data, bytes):
                    data = json.dumps(data).encode()
                self.send_response(status)
                if data:
                    self.send_header("Content-Type", content_type or "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def chunked(self, chunks: list[bytes]) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                self.write_chunks(chunks)

            def write_chunks(self, chunks: list[bytes]) -> None:
                for chunk in chunks:
                    self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        return Handler
