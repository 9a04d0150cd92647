"""The compose file's TLS front (Caddy) reaches the gateway, and the gateway believes
its forwarded headers and nobody else's (no engine runs here: the files are read)."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

import yaml

from pipelinejobs.config import load_config

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_caddy_terminates_tls_on_443_for_the_gateway() -> None:
    services = yaml.safe_load((DEPLOY / "compose.yml").read_text())["services"]
    caddy, gateway = services["caddy"], services["gateway"]
    caddyfile = (DEPLOY / "caddy" / "Caddyfile").read_text()

    assert "443:443" in caddy["ports"]
    assert "./caddy/Caddyfile:/etc/caddy/Caddyfile:ro" in caddy["volumes"]
    assert "ports" not in gateway  # only through the front
    port = gateway["command"][gateway["command"].index("--port") + 1]
    assert re.search(rf"^\s*reverse_proxy gateway:{port}$", caddyfile, re.M)
    # The gateway trusts the front's fixed address, which lies in the network's subnet.
    trusted = gateway["environment"]["PIPELINEJOBS_GATEWAY_TRUSTED_PROXIES"]
    address = caddy["networks"]["default"]["ipv4_address"]
    assert trusted == address
    subnet = yaml.safe_load((DEPLOY / "compose.yml").read_text())["networks"]["default"]
    network = ipaddress.ip_network(subnet["ipam"]["config"][0]["subnet"])
    assert ipaddress.ip_address(address) in network
    config = load_config(env={"PIPELINEJOBS_GATEWAY_TRUSTED_PROXIES": trusted})
    assert config.trusted_proxies == (ipaddress.ip_network(address),)
