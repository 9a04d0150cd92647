"""Whether ``serve`` can listen where it is told to, asked before it creates anything.

:func:`check_free` binds the address the way waitress will (``SO_REUSEADDR``, IPv6
sockets IPv6-only) and lets it go at once. If the port is taken it says so in one
sentence, naming the process that holds it when this machine lets us see it:
:func:`holder` reads Linux's ``/proc/net/tcp*`` for the listening socket's inode and
looks for it among ``/proc/<pid>/fd`` — the standard library only (psutil would be a
dependency for one sentence). Elsewhere, or for another user's process, it names none.
"""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

from pipelinejobs.cli.output import printable
from pipelinejobs.errors import ConfigError

__all__ = ["check_free", "holder"]

#: /proc/net/tcp's state of a listening socket.
LISTEN = "0A"


def check_free(host: str, port: int) -> None:
    """Raise :class:`ConfigError` if ``host:port`` cannot be listened on (in use: by
    which process, when it can tell)."""
    try:
        addresses = socket.getaddrinfo(
            None if host in ("", "*") else host,
            port,
            type=socket.SOCK_STREAM,
            proto=socket.IPPROTO_TCP,
            flags=socket.AI_PASSIVE,
        )
    except socket.gaierror as exc:
        raise ConfigError(f"cannot listen on {host!r}: {exc.strerror} (gateway.host)") from exc
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    who = holder(port)
                    raise ConfigError(
                        f"port {port} on {host} is in use"
                        + (f" by {who}" if who else "")
                        + "; choose another with --port (gateway.port)"
                    ) from exc
                raise ConfigError(
                    f"cannot listen on {host} port {port}: {exc.strerror} "
                    f"(gateway.host, gateway.port)"
                ) from exc


def holder(port: int, proc: Path = Path("/proc")) -> str | None:
    """``pid N (command line)`` of a process listening on TCP ``port``, or None when
    it cannot be told (not Linux, another user's process, another network namespace)."""
    sockets = {f"socket:[{inode}]" for inode in _listening(port, proc)}
    if not sockets:
        return None
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            held = any(os.readlink(fd) in sockets for fd in (entry / "fd").iterdir())
        except OSError:  # gone, or not ours to read
            continue
        if held:
            return f"pid {entry.name} ({_command(entry)})"
    return None


def _listening(port: int, proc: Path) -> set[str]:
    """The inodes of the sockets listening on ``port`` (IPv4 and IPv6)."""
    inodes = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10 or parts[3] != LISTEN:
                continue
            try:
                local = int(parts[1].rsplit(":", 1)[1], 16)
            except (IndexError, ValueError):
                continue
            if local == port:
                inodes.add(parts[9])
    return inodes


def _command(entry: Path) -> str:
    try:
        words = (entry / "cmdline").read_bytes().split(b"\0")
        line = " ".join(w.decode(errors="replace") for w in words if w)
        if not line:
            line = (entry / "comm").read_text().strip()
    except OSError:
        return "?"
    return printable(line, 80)
