"""Resources a test run left open (not a test module, not a conftest).

The suite turns warnings into errors, but a socket or file nobody closed warns only
when it is garbage-collected: if something still holds it (kombu's process-wide
connection pools hold their broker connections), that is at interpreter shutdown,
after pytest has reported, where ``Exception ignored in: <socket ...>`` is printed
and nothing fails. :func:`unclosed` looks at the end of the session instead, while a
failure still counts: it collects garbage with ResourceWarnings recorded, then lists
the sockets still open.
"""

from __future__ import annotations

import gc
import socket
import warnings


def describe(sock: socket.socket) -> str:
    """A socket as its ResourceWarning would show it: family, fd and both ends."""
    try:
        peer = sock.getpeername()
    except OSError:
        peer = None
    try:
        local = sock.getsockname()
    except OSError:
        local = None
    return f"fd={sock.fileno()} {sock.family.name} laddr={local} raddr={peer}"


def unclosed() -> list[str]:
    """What was left open: ResourceWarnings raised while collecting garbage (files,
    sockets, subprocesses that became garbage unclosed), then every socket object
    still open, which would warn at interpreter shutdown."""
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    found += [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    found += [
        f"open socket {describe(obj)}"
        for obj in gc.get_objects()
        if isinstance(obj, socket.socket) and obj.fileno() != -1
    ]
    return found
