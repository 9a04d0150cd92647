"""The gateway's public base URL: what a job's ``agent`` and ``task`` URLs start with.

The seed's record names the actor and the execution that manage a job as absolute
URLs (``https://api.tacc.cloud/actors/v2/G46vjoAVzGkkz/executions/Myp6wvklV0zgQ``).
Which scheme and host are "ours" is, in order:

1. ``gateway.public_url`` when it is set — the one a deployment behind a proxy or a
   load balancer should set;
2. else the URL the request came in on: its scheme and ``Host``. A reverse proxy's
   ``X-Forwarded-Proto`` / ``X-Forwarded-Host`` are believed only when the request
   comes straight from an address ``gateway.trusted_proxies`` lists (and only the
   value that proxy added: the last in a list); by default nobody's are, since any
   client can send those headers. A ``Host`` that is not a host name (``a/b``) is
   not used: the configured callback URL (``launcher.public_url``) is.

The URL is worked out here, where the request is, and stored on the execution
(``base_url``, :meth:`pipelinejobs.runtime.dispatch.Runtime.submit`): a worker has
no request, and a message an actor sends inherits its parent's.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from flask import request

#: A host as ``X-Forwarded-Host`` may name it: a DNS name or an IPv4/[IPv6] literal,
#: with an optional port. Anything else is ignored (the request's own host is used).
_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def _last(header: str | None) -> str:
    """The value the nearest proxy added: the last of a comma-separated list."""
    return (header or "").split(",")[-1].strip()


def from_trusted_proxy(config: Any) -> bool:
    """Whether the request comes straight from an address ``gateway.trusted_proxies``
    lists."""
    networks = config.trusted_proxies
    if not networks or not request.remote_addr:
        return False
    try:
        peer = ipaddress.ip_address(request.remote_addr)
    except ValueError:
        return False
    return any(peer in network for network in networks)


def base_url(config: Any) -> str:
    """The public base URL for the current request (see the module docstring), without
    a trailing ``/``."""
    if config.gateway.public_url:
        return str(config.gateway.public_url).rstrip("/")
    scheme, host = request.scheme, request.host
    if from_trusted_proxy(config):
        proto = _last(request.headers.get("X-Forwarded-Proto")).lower()
        if proto in ("http", "https"):
            scheme = proto
        forwarded = _last(request.headers.get("X-Forwarded-Host"))
        if _HOST.fullmatch(forwarded):
            host = forwarded
    if not _HOST.fullmatch(host):  # a Host header no URL could carry
        return str(config.public_url)
    prefix = request.script_root.rstrip("/")
    return f"{scheme}://{host}{prefix}"
