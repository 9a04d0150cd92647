"""The request log: one line per request, as an operator reads it, without a secret."""

from __future__ import annotations

import json
import re

from flask.testing import FlaskClient

from pipelinejobs.gateway import Gateway
from pipelinejobs.runtime.dispatch import Runtime
from tests.gateway.conftest import bearer, make_job, result_of, token_of
from tests.observability.log_capture import capture

LINE = re.compile(
    r"^\S+Z (?P<level>\w+) +(?P<method>[A-Z]+) (?P<path>\S+) (?P<status>\d{3}) "
    r"(?P<ms>[\d.]+) ms (?P<remote>\S+)(?: (?P<who>\S+))?$"
)


def requests_logged(text: str) -> list[dict[str, str]]:
    found = [LINE.match(line) for line in text.splitlines()]
    return [m.groupdict() for m in found if m]


def test_a_message_with_a_token_and_a_nonce_is_logged_without_either(
    runtime: Runtime, client: FlaskClient, admin_key: str, gateway: Gateway
) -> None:
    job = make_job(runtime)
    token = token_of(runtime, job)
    nonce = result_of(
        client.post(
            "/actors/v2/jobs-manager/nonces", json={"maxUses": 5}, headers=bearer(admin_key)
        ),
        201,
    )["id"]
    with capture() as out:
        answer = client.post(
            "/actors/v2/jobs-manager/messages",
            query_string={"uuid": job["uuid"], "name": "finish", "token": token, "x-nonce": nonce},
            json={"arbitrary": "key value data"},
            headers={"X-Forwarded-For": "10.9.8.7"},
        )
        assert answer.status_code == 200, answer.get_json()
        client.get("/jobs", headers=bearer(admin_key))
    text = out.getvalue()
    for secret in (token, nonce, admin_key):
        assert secret not in text
    posted, listed = requests_logged(text)
    assert posted["level"] == "INFO" and posted["method"] == "POST"
    assert posted["path"] == (
        f"/actors/v2/jobs-manager/messages?uuid={job['uuid']}&name=finish"
        f"&token=********&x-nonce=********"
    )
    assert posted["status"] == "200" and float(posted["ms"]) >= 0
    assert posted["remote"] == "127.0.0.1"  # the peer, not a header anyone can send
    owner = gateway.keys.authenticate(admin_key).owner
    assert posted["who"] == f"key:{owner[:12]}/nonce"  # the nonce's maker, not the nonce
    assert listed["path"] == "/jobs" and listed["who"] == f"key:{owner[:12]}"  # as on a history


def test_a_nonce_in_the_path_is_masked(
    client: FlaskClient, admin_key: str, gateway: Gateway
) -> None:
    nonce = result_of(
        client.post("/actors/v2/jobs-manager/nonces", json={}, headers=bearer(admin_key)), 201
    )["id"]
    with capture() as out:
        client.get(f"/actors/v2/jobs-manager/nonces/{nonce}", headers=bearer(admin_key))
        client.delete(f"/actors/v2/jobs-manager/nonces/{nonce}", headers=bearer(admin_key))
    text = out.getvalue()
    assert nonce not in text
    got, deleted = requests_logged(text)
    assert got["path"] == deleted["path"] == "/actors/v2/jobs-manager/nonces/********"
    assert (got["method"], deleted["method"]) == ("GET", "DELETE")


def test_requests_refused_before_the_route_are_logged_once_with_their_time(
    client: FlaskClient, admin_key: str
) -> None:
    with capture() as out:
        client.get("/jobs", query_string={"limit": "0"}, headers=bearer(admin_key))  # 400
        client.get("/jobs")  # 401: no credential
        client.get("/jobs", headers={"Authorization": "Bearer not-a-key-SECRET"})  # 401
        client.get("/no/such/route")  # 404
    logged = requests_logged(out.getvalue())
    assert [(r["path"], r["status"]) for r in logged] == [
        ("/jobs?limit=0", "400"),
        ("/jobs", "401"),
        ("/jobs", "401"),
        ("/no/such/route", "404"),
    ]
    assert all(r["who"] is None for r in logged)
    assert "not-a-key-SECRET" not in out.getvalue()


def test_health_checks_are_debug_lines(client: FlaskClient) -> None:
    with capture("human", "INFO") as out:
        client.get("/healthz")
    assert out.getvalue() == ""
    with capture("human", "DEBUG") as out:
        client.get("/healthz")
    assert [r["path"] for r in requests_logged(out.getvalue())] == ["/healthz"]


def test_a_json_request_line(client: FlaskClient, admin_key: str) -> None:
    with capture("json") as out:
        client.get(
            "/jobs", query_string={"state": "RUNNING", "token": "abc"}, headers=bearer(admin_key)
        )
    (line,) = [json.loads(x) for x in out.getvalue().splitlines() if '"request"' in x]
    assert line["event"] == "request" and line["logger"] == "pipelinejobs.http"
    assert (line["method"], line["path"], line["status"]) == (
        "GET",
        "/jobs?state=RUNNING&token=********",
        200,
    )
    assert isinstance(line["duration_ms"], float) and line["remote"] == "127.0.0.1"
    assert line["who"].startswith("key:")
    assert line["message"].startswith("GET /jobs?state=RUNNING&token=******** 200 ")
