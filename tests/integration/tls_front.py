"""A TLS front for a test's ``pipelinejobs serve``: what Caddy is in deploy/compose.yml.

* :func:`self_signed` makes a certificate at test time (the ``cryptography``
  package): its own trust anchor, for ``pipelinejobs.test``, ``localhost`` and
  127.0.0.1, so clients verify it (``verify=<its path>``) instead of turning
  verification off.
* :class:`TLSFront` terminates TLS and passes each request to the gateway over plain
  HTTP with ``X-Forwarded-Proto: https``, ``X-Forwarded-Host`` (the Host the client
  asked for) and ``X-Forwarded-For``, as a reverse proxy does.
* :class:`ConnectTunnel` is an HTTP proxy that answers ``CONNECT`` by piping bytes to
  the front. agavepy builds ``https://`` URLs and attaches its bearer header only
  when the API server's URL has no port (its authenticator compares the configured
  host, port included, with the request's host name), so it needs a server on 443.
  Rather than bind 443 (root only, one test at a time), the test gives agavepy
  ``https://pipelinejobs.test`` and this proxy (agavepy's ``proxies`` setting): the
  client sends exactly what it would send to a real front on 443, TLS and all, and
  the tunnel carries it to the front's port.
"""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import select
import socket
import socketserver
import ssl
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HOST = "pipelinejobs.test"
#: Headers that belong to one hop (RFC 9110 7.6.1), not passed on.
HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}


def self_signed(folder: Path) -> tuple[Path, Path]:
    """(certificate, key) PEM files of a new self-signed certificate for
    ``pipelinejobs.test``, ``localhost`` and 127.0.0.1, valid for a day."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(HOST),
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "front.crt", folder / "front.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    upstream: tuple[str, int] = ("127.0.0.1", 0)


class _Forward(BaseHTTPRequestHandler):
    """One request in, the same request to the gateway, its answer back."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        headers["X-Forwarded-Proto"] = "https"
        headers["X-Forwarded-Host"] = self.headers.get("Host", "")
        headers["X-Forwarded-For"] = self.client_address[0]
        upstream = http.client.HTTPConnection(*self.server.upstream, timeout=120)
        try:
            upstream.request(self.command, self.path, body=body, headers=headers)
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        self.send_response(answer.status, answer.reason)
        for name, value in answer.getheaders():
            if name.lower() not in HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        """Quiet: the gateway logs every request itself."""


class TLSFront:
    """``https://127.0.0.1:<port>`` in front of ``upstream`` (``http://host:port``)."""

    def __init__(self, cert: Path, key: Path, upstream: str) -> None:
        parsed = urllib.parse.urlsplit(upstream)
        self.server = _Server(("127.0.0.1", 0), _Forward)
        self.server.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = int(self.server.server_address[1])
        self.url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _pipe(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes."""
    sockets = [a, b]
    while True:
        ready, _, _ = select.select(sockets, [], [], 60)
        if not ready:
            return
        for sock in ready:
            data = sock.recv(65536)
            if not data:
                return
            (b if sock is a else a).sendall(data)


class _Connect(socketserver.StreamRequestHandler):
    server: _TunnelServer

    def handle(self) -> None:
        line = self.rfile.readline(65537).decode("latin-1")
        while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
            pass  # the proxy request's headers: nothing in them matters here
        method, target, _ = line.split(" ", 2)
        if method != "CONNECT" or not target.endswith(":443"):
            self.wfile.write(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        with socket.create_connection(("127.0.0.1", self.server.front_port), timeout=60) as out:
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self.wfile.flush()
            _pipe(self.connection, out)


class _TunnelServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    front_port = 0


class ConnectTunnel:
    """An HTTP proxy whose every ``CONNECT <host>:443`` reaches the front's port."""

    def __init__(self, front_port: int) -> None:
        self.server = _TunnelServer(("127.0.0.1", 0), _Connect)
        self.server.front_port = front_port
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
