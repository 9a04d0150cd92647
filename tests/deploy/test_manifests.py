"""The deploy files name real commands and real settings, and the Kubernetes manifest
is valid against Kubernetes' own schemas (checked offline: no cluster runs here; the
image and compose.yml are tried for real in test_compose.py)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from pipelinejobs.cli import build_parser
from pipelinejobs.config import Config, env_name

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SETTINGS = {
    env_name(s.name, k.name)
    for s in dataclasses.fields(Config())
    for k in dataclasses.fields(getattr(Config(), s.name))
}


def commands_and_env() -> tuple[list[list[str]], set[str]]:
    commands: list[list[str]] = []
    names: set[str] = set()
    compose = yaml.safe_load((DEPLOY / "compose.yml").read_text())
    for service in compose["services"].values():
        if isinstance(service.get("command"), list) and service["command"][0] == "pipelinejobs":
            commands.append(service["command"])
        names |= set(service.get("environment") or {})
    for doc in yaml.safe_load_all((DEPLOY / "kubernetes" / "pipelinejobs.yaml").read_text()):
        if doc["kind"] == "ConfigMap":
            names |= set(doc["data"])
        if doc["kind"] == "Deployment":
            for container in doc["spec"]["template"]["spec"]["containers"]:
                commands.append(container["command"])
                names |= {e["name"] for e in container.get("env", [])}
    docker = (DEPLOY / "Dockerfile").read_text()
    commands.append(yaml.safe_load(re.search(r"^CMD (.*)$", docker, re.M).group(1)))
    names |= set(re.findall(r"(PIPELINEJOBS_[A-Z_]+)=", docker))
    return commands, {n for n in names if n.startswith("PIPELINEJOBS_")}


COMMANDS, ENV = commands_and_env()


@pytest.mark.parametrize("command", COMMANDS, ids=[" ".join(c[1:3]) for c in COMMANDS])
def test_every_command_parses(command: list[str]) -> None:
    assert command[0] == "pipelinejobs"
    build_parser().parse_args(command[1:])


@pytest.mark.parametrize("name", sorted(ENV))
def test_every_environment_variable_is_a_setting(name: str) -> None:
    assert name in SETTINGS


def test_every_actor_has_a_worker_in_compose_and_kubernetes() -> None:
    """A queue nobody consumes fills silently: each deployment runs a worker for every
    actor (the notifier, added by issue 16, included)."""
    from pipelinejobs.runtime.dispatch import ACTOR_MODULES

    compose = yaml.safe_load((DEPLOY / "compose.yml").read_text())
    kube = yaml.safe_load_all((DEPLOY / "kubernetes" / "pipelinejobs.yaml").read_text())
    for commands in (
        [s["command"] for s in compose["services"].values() if isinstance(s.get("command"), list)],
        [c["command"] for d in kube if d["kind"] == "Deployment"
         for c in d["spec"]["template"]["spec"]["containers"]],
    ):  # fmt: skip
        served: set[str] = set()
        for command in commands:
            if command[:2] == ["pipelinejobs", "worker"] and "--actors" in command:
                served |= set(command[command.index("--actors") + 1].split(","))
        assert served >= set(ACTOR_MODULES), set(ACTOR_MODULES) - served


KUBERNETES_VERSION = "1.30"  # an old enough cluster: what is valid there is valid later


def kube_documents() -> list[dict]:
    return list(yaml.safe_load_all((DEPLOY / "kubernetes" / "pipelinejobs.yaml").read_text()))


@pytest.mark.parametrize(
    "doc", kube_documents(), ids=lambda d: f"{d['kind']}/{d['metadata']['name']}"
)
def test_the_kubernetes_manifest_is_valid_offline(doc: dict) -> None:
    """kubernetes-validate ships the API's OpenAPI schemas, so this needs no cluster
    and no network; strict: an unknown field (a typo) is an error too."""
    import kubernetes_validate

    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_validator_refuses_a_broken_probe() -> None:
    """What makes the test above able to fail: a probe with no port is refused."""
    import kubernetes_validate

    (gateway,) = [d for d in kube_documents() if d["metadata"]["name"] == "pipelinejobs-gateway"]
    del gateway["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["port"]
    with pytest.raises(kubernetes_validate.ValidationError, match="'port' is a required"):
        kubernetes_validate.validate(gateway, KUBERNETES_VERSION, strict=True)


def test_every_process_has_a_probe_in_kubernetes() -> None:
    """The gateway is ready and live on /healthz; each worker is live on its
    --metrics-port (it serves nothing else)."""
    for doc in kube_documents():
        if doc["kind"] != "Deployment":
            continue
        (container,) = doc["spec"]["template"]["spec"]["containers"]
        command = container["command"]
        live = container["livenessProbe"]["httpGet"]
        if command[1] == "gateway":
            assert container["readinessProbe"]["httpGet"] == {"path": "/healthz", "port": 8000}
            assert live == {"path": "/healthz", "port": 8000}
        else:
            port = int(command[command.index("--metrics-port") + 1])
            assert live == {"path": "/metrics", "port": port}
            assert command[command.index("--metrics-host") + 1] == "0.0.0.0"
