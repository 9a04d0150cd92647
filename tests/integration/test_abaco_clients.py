"""agavepy 0.9.5 and tapipy 25.4.0, unmodified, against ``pipelinejobs serve`` behind TLS.

The seed's users reached the actors through Abaco's clients, and today through Tapis
v3's. Both drive a real server here through a TLS-terminating front started by the
test (tls_front.py: a certificate made now, the front passing ``X-Forwarded-*`` to a
gateway that trusts 127.0.0.1 as its proxy), every call of theirs that has a meaning
here, and each answer is checked against what the server did and against the same
question asked of the ``/actors/v2`` routes directly.
"""

from __future__ import annotations

import contextlib
import gc
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import requests

from .conftest import _free_port
from .server import ROOT, Server, start_server
from .tls_front import HOST, ConnectTunnel, TLSFront, self_signed

pytestmark = pytest.mark.slow

agave = pytest.importorskip("agavepy.agave", reason="agavepy is in the test extra")
tapis = pytest.importorskip("tapipy.tapis", reason="tapipy is in the test extra")
tapis_errors = pytest.importorskip("tapipy.errors")

MANAGER, LAUNCHER, PIPELINES = "jobs-manager", "launcher-proxy", "pipelines-manager"
PIPELINE = {
    "name": "Abaco clients",
    "components": [{"id": "abaco-clients-0.1", "inputs": {}, "parameters": {}}],
}
LAUNCH = {
    "parameters": {"sample_id": "sample.tacc.abaco"},
    "job_definition": {
        "appId": "abaco-clients-0.1",
        "outputs": {"sample.tacc.abaco/reads.csv": "a,b\n1,2\n"},
        "report": ["RUNNING"],
    },
    "index": False,
}
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy")


def cli(*args: str, data_dir: Path) -> str:
    """``pipelinejobs ARGS --data-dir DATA``: its last line of output (the key)."""
    done = subprocess.run(
        [sys.executable, "-m", "pipelinejobs.cli", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


@dataclass
class World:
    server: Server
    front: TLSFront
    tunnel: ConnectTunnel
    cert: Path
    jwt_key: str
    data: Path

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.server.admin_key}"}

    def v2(self, path: str, **params: Any) -> Any:
        """``GET /actors/v2<path>`` through the front, with the admin key: the result."""
        response = requests.get(
            f"{self.front.url}/actors/v2{path}",
            params=params,
            headers=self.admin,
            verify=str(self.cert),
            timeout=30,
        )
        assert response.status_code == 200, response.text
        return response.json()["result"]

    def job(self, uuid: str) -> dict[str, Any]:
        response = requests.get(f"{self.server.url}/jobs/{uuid}", headers=self.admin, timeout=30)
        assert response.status_code == 200, response.text
        result = response.json()["result"]
        assert isinstance(result, dict)
        return result


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for name in PROXY_VARIABLES:  # the clients reach the front, not a machine's proxy
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    cert, key = self_signed(tmp_path)
    data = tmp_path / "data"
    server = start_server(
        data, _free_port(), settings={"PIPELINEJOBS_GATEWAY_TRUSTED_PROXIES": "127.0.0.1"}
    )
    front = TLSFront(cert, key, server.url)
    tunnel = ConnectTunnel(front.port)
    try:
        # tapipy reads the JWT's exp (it refreshes a token about to expire): --expires-in.
        jwt_key = cli(
            "keys", "create", "--role", "admin", "--jwt", "--expires-in", "3600", data_dir=data
        )
        yield World(server, front, tunnel, cert, jwt_key, data)
    finally:
        tunnel.close()
        front.close()
        server.stop()
    text = server.output()
    assert "Traceback" not in text, text[-5000:]


@contextlib.contextmanager
def agavepy_client(world: World, **credentials: Any) -> Iterator[Any]:
    """agavepy as a user configures it: the API server at 443 (through the tunnel),
    the front's certificate trusted; its HTTP session closed at the end."""
    with warnings.catch_warnings():
        # agavepy 0.9.5 reads resource_exceptions.json with json.load(open(...)) and
        # never closes the file: its ResourceWarning is agavepy's, not the server's.
        warnings.simplefilter("ignore", ResourceWarning)
        client = agave.Agave(
            api_server=f"https://{HOST}",
            verify=str(world.cert),
            proxies={"https": world.tunnel.url},
            **credentials,
        )
        gc.collect()
    try:
        yield client
    finally:
        client.all.http_client.close()


@contextlib.contextmanager
def tapipy_client(world: World) -> Iterator[Any]:
    """tapipy given only the front's URL and a JWT key; its session closed at the end."""
    client = tapis.Tapis(
        base_url=world.front.url, access_token=world.jwt_key, verify=str(world.cert)
    )
    try:
        yield client
    finally:
        client.requests_session.close()


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_agavepy_drives_the_actors(world: World) -> None:
    with agavepy_client(world, token=world.server.admin_key) as ag:
        ids = {a["alias"]: a["id"] for a in world.v2("")}

        # Discovery: the five actors, their aliases, the embedded server's worker.
        actors = ag.actors.list()
        assert [a["alias"] for a in actors] == [
            PIPELINES,
            MANAGER,
            "jobs-indexer",
            LAUNCHER,
            "notifier",
        ]
        assert {a["id"] for a in actors} == set(ids.values())
        one = ag.actors.get(actorId=ids[MANAGER])
        assert one["alias"] == MANAGER and one["status"] == "READY"
        assert [s["name"] for s in one["accepts"]] == [
            "pipelinejob_manager_event",
            "agave_job_callback",
            "pipelinejob_tag",
            "pipelinejob_bulk",
        ]
        assert {a["alias"]: a["actorId"] for a in ag.actors.listAliases()} == ids
        assert ag.actors.getAlias(alias=MANAGER)["actorId"] == ids[MANAGER]
        workers = ag.actors.listWorkers(actorId=ids[MANAGER])
        assert workers and workers[0]["status"] == "READY" and MANAGER in workers[0]["actors"]

        # A pipeline and a launch, as Reactors send them: body={"message": ...}, synchronous.
        sync = {"_abaco_synchronous": "true"}
        made = ag.actors.sendMessage(
            actorId=PIPELINES, body={"message": PIPELINE}, environment=sync
        )
        assert made["status"] == "COMPLETE", made
        assert made["_links"]["self"].startswith(
            f"https://{HOST}/actors/v2/{PIPELINES}/executions/"
        )
        launched = ag.actors.sendMessage(
            actorId=ids[LAUNCHER], body={"message": LAUNCH}, environment=sync
        )
        assert launched["status"] == "COMPLETE", launched
        job, token = launched["result"]["uuid"], launched["result"]["token"]
        assert wait_for(lambda: world.job(job)["state"] == "RUNNING")

        # An event as the message, queued: applied.
        queued = ag.actors.sendMessage(
            actorId=MANAGER,
            body={"message": {"uuid": job, "name": "update", "token": token, "data": {"p": 50}}},
        )
        assert queued["executionId"] and queued["msg"]["token"] == "********"
        assert wait_for(lambda: world.job(job)["last_event"] == "update")
        # The same event as environment= (URL parameters), the body its data: applied.
        finished = ag.actors.sendMessage(
            actorId=ids[MANAGER],
            body={"message": {"arbitrary": "key value data"}},
            environment={"uuid": job, "name": "finish", "token": token, **sync},
        )
        assert finished["status"] == "COMPLETE" and finished["result"]["state"] == "FINISHED"
        record = world.job(job)
        assert record["state"] == "FINISHED"
        assert record["history"][-1]["data"] == {"arbitrary": "key value data"}
        assert record["history"][-2]["data"] == {"p": 50}

        # Executions: offset honoured, one execution, its log, its result.
        everything = [e["id"] for e in world.v2(f"/{MANAGER}/executions", limit=50)["executions"]]
        assert len(everything) >= 3
        page = ag.actors.listExecutions(actorId=ids[MANAGER], limit=2, offset=1)
        assert [e["id"] for e in page["executions"]] == everything[1:3]
        assert page["totalExecutions"] == len(everything)
        execution = ag.actors.getExecution(actorId=MANAGER, executionId=finished["executionId"])
        assert execution["status"] == "COMPLETE" and execution["executor"]
        logs = ag.actors.getExecutionLogs(actorId=MANAGER, executionId=finished["executionId"])
        assert "FINISHED" in logs["logs"]
        assert logs["_links"]["self"].startswith(f"https://{HOST}/")
        result = ag.actors.getOneExecutionResult(
            actorId=LAUNCHER, executionId=launched["executionId"]
        )
        assert result.headers["Content-Type"] == "application/octet-stream"
        assert result.json()["uuid"] == job and result.json()["token"] == token

        # Nonces: made, listed with ids their owner can use — as a nonce-only agavepy does.
        made_nonce = ag.actors.addNonce(actorId=MANAGER, body={"maxUses": 5, "level": "EXECUTE"})
        listed = ag.actors.listNonces(actorId=MANAGER)
        assert made_nonce["id"] in [n["id"] for n in listed]
        assert all(n["owner"] for n in listed)
        unlimited = ag.actors.addNonce(actorId=MANAGER, body={"maxUses": -1})
        assert (unlimited["maxUses"], unlimited["remainingUses"]) == (-1, -1)
        with agavepy_client(world, use_nonce=True) as by_nonce:
            updated = by_nonce.actors.sendMessage(
                actorId=MANAGER,
                body={"message": {"uuid": job, "name": "update", "token": token}},
                nonce=listed[0]["id"],
                environment=sync,
            )
        assert updated["status"] == "COMPLETE"
        assert ag.actors.getNonce(actorId=MANAGER, nonceId=made_nonce["id"])["remainingUses"] in (
            4,
            5,
        )
        ag.actors.deleteNonce(actorId=MANAGER, nonceId=unlimited["id"])
        assert unlimited["id"] not in [n["id"] for n in ag.actors.listNonces(actorId=MANAGER)]


def test_abacos_form_field_through_the_front(world: World) -> None:
    """``curl -d message=...`` (Abaco's classic form) with a JWT key as the bearer."""
    response = requests.post(
        f"{world.front.url}/actors/v2/{PIPELINES}/messages",
        data={
            "message": '{"name": "form", "components": '
            '[{"id": "form-0.1", "inputs": {}, "parameters": {}}]}'
        },
        params={"_abaco_synchronous": "true"},
        headers={"Authorization": f"Bearer {world.jwt_key}"},
        verify=str(world.cert),
        timeout=60,
    )

    assert response.status_code == 200, response.text
    assert response.json()["result"]["result"]["uuid"].startswith("106")


def test_tapipy_drives_the_actors_with_a_jwt_key(world: World) -> None:
    with tapipy_client(world) as t:
        assert t.tenant_id == "pipelinejobs"  # from /v3/tenants, matched on the base URL

        made = t.actors.send_message(
            actor_id=PIPELINES, message=PIPELINE, _abaco_synchronous="true"
        )
        assert made.status == "COMPLETE"
        launched = t.actors.send_message(
            actor_id=LAUNCHER, message=LAUNCH, _abaco_synchronous="true"
        )
        job, token = launched.result.uuid, launched.result.token
        assert wait_for(lambda: world.job(job)["state"] == "RUNNING")
        finished = t.actors.send_message(
            actor_id=MANAGER,
            message={"uuid": job, "name": "finish", "token": token},
            _abaco_synchronous="true",
        )
        assert finished.result.state == "FINISHED" and world.job(job)["state"] == "FINISHED"

        # The same executions and logs as the /actors/v2 routes answer.
        listed = t.actors.list_executions(actor_id=MANAGER)
        v2 = world.v2(f"/{MANAGER}/executions")
        assert [e.id for e in listed.executions] == [e["id"] for e in v2["executions"]]
        one = t.actors.get_execution(actor_id=MANAGER, execution_id=finished.id)
        assert (one.id, one.status) == (
            finished.id,
            world.v2(f"/{MANAGER}/executions/{one.id}")["status"],
        )
        logs = t.actors.get_execution_logs(actor_id=MANAGER, execution_id=finished.id)
        assert logs.logs == world.v2(f"/{MANAGER}/executions/{finished.id}/logs")["logs"]
        assert "FINISHED" in logs.logs

        # Nonces, in Tapis's snake_case: made, listed with their usable ids.
        nonce = t.actors.create_nonce(actor_id=MANAGER, level="EXECUTE", max_uses=3)
        assert (nonce.maxUses, nonce.remainingUses) == (3, 3)
        listed_nonces = t.actors.list_nonces(actor_id=MANAGER)
        assert nonce.id in [n.id for n in listed_nonces]
        used = requests.post(
            f"{world.server.url}/actors/v2/{MANAGER}/messages",
            json={"uuid": job, "name": "update", "token": token},
            params={"x-nonce": nonce.id},
            timeout=30,
        )
        assert used.status_code == 200, used.text

        # A revoked key's JWT is refused at once: the key behind it is looked up each time.
        sub = jwt.decode(world.jwt_key, options={"verify_signature": False})["sub"]
        cli("keys", "revoke", sub.removeprefix("key:"), data_dir=world.data)
        with pytest.raises(tapis_errors.UnauthorizedError):
            t.actors.list_executions(actor_id=MANAGER)
