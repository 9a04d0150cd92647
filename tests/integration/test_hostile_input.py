"""Hostile input against a real ``pipelinejobs serve``, over real HTTP.

Each row is something a careless or hostile caller sends. Every one must get its 4xx
in the JSON envelope, naming the field path where there is one, store nothing (no
execution on any actor, no job, no nonce, no history entry) and leave the server
healthy. The last tests show the system still does its work afterwards, and that
the same POST sent twenty times at once with one ``Idempotency-Key`` is applied once.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from .conftest import _free_port
from .server import Server, start_server
from .test_serve import cli

pytestmark = pytest.mark.slow

APP = "hostile-app"
ACTORS = ("pipelines-manager", "jobs-manager", "jobs-indexer", "launcher-proxy")


@dataclass
class Target:
    server: Server
    http: requests.Session
    data: Path
    user: dict[str, str]
    admin: dict[str, str]
    job: str
    token: str

    def url(self, path: str) -> str:
        return f"{self.server.url}{path}"

    def stored(self) -> dict[str, Any]:
        """Everything a refused request must not have changed."""
        counts: dict[str, Any] = {}
        for actor in ACTORS:
            page = self.http.get(
                self.url(f"/actors/v2/{actor}/executions"),
                params={"limit": 500},
                headers=self.admin,
                timeout=10,
            ).json()["result"]
            counts[actor] = len(page["executions"])
        jobs = self.http.get(self.url("/jobs"), params={"limit": 500}, headers=self.admin)
        counts["jobs"] = len(jobs.json()["result"]["jobs"])
        nonces = self.http.get(self.url("/actors/v2/jobs-manager/nonces"), headers=self.admin)
        counts["nonces"] = len(nonces.json()["result"])
        job = self.http.get(self.url(f"/jobs/{self.job}"), headers=self.admin).json()["result"]
        counts["history"] = len(job["history"])
        return counts


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    data = tmp_path_factory.mktemp("hostile") / "data"
    server = start_server(data, _free_port())
    http = requests.Session()
    try:
        user = {"Authorization": f"Bearer {cli('keys', 'create', '--role', 'user', data_dir=data)}"}
        admin = {"Authorization": f"Bearer {server.admin_key}"}
        sync = {"_abaco_synchronous": "true"}
        made = http.post(
            f"{server.url}/actors/v2/pipelines-manager/messages",
            json={"name": "hostile", "components": [{"id": APP, "inputs": {}, "parameters": {}}]},
            params=sync,
            headers=user,
            timeout=30,
        )
        assert made.status_code == 200, made.text
        launched = http.post(
            f"{server.url}/actors/v2/launcher-proxy/messages",
            json={
                "parameters": {"sample_id": "sample.hostile.1"},
                "job_definition": {"appId": APP},
            },
            params=sync,
            headers=user,
            timeout=30,
        )
        assert launched.status_code == 200, launched.text
        result = launched.json()["result"]["result"]
        yield Target(server, http, data, user, admin, result["uuid"], result["token"])
    finally:
        http.close()
        server.stop()


# -- the table -----------------------------------------------------------------------------

#: (id, request builder, expected status, expected field path or None for "none to name")
Case = tuple[str, Callable[[Target], dict[str, Any]], int, str | None]


def message(actor: str, body: bytes | str, **params: str) -> Callable[[Target], dict[str, Any]]:
    """A POST of a raw body to an actor; ``{job}``/``{token}`` are filled in."""

    def build(t: Target) -> dict[str, Any]:
        raw = body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass")
        raw = raw.replace(b"{job}", t.job.encode()).replace(b"{token}", t.token.encode())
        filled = {
            k: v.replace("{job}", t.job).replace("{token}", t.token) for k, v in params.items()
        }
        return {
            "method": "POST",
            "url": t.url(f"/actors/v2/{actor}/messages"),
            "data": raw,
            "params": filled,
            "headers": {**t.user, "Content-Type": "application/json"},
        }

    return build


def event(data: str, name: str = '"update"') -> Callable[[Target], dict[str, Any]]:
    """A jobs-manager event on the test's job with ``data`` spliced in as raw JSON text."""
    return message(
        "jobs-manager", '{"uuid":"{job}","token":"{token}","name":' + name + ',"data":' + data + "}"
    )


def with_params(
    path: str, params: list[tuple[str, str]], method: str = "GET", **extra: Any
) -> Callable[[Target], dict[str, Any]]:
    def build(t: Target) -> dict[str, Any]:
        filled = [(k, v.replace("{job}", t.job).replace("{token}", t.token)) for k, v in params]
        return {
            "method": method,
            "url": t.url(path),
            "params": filled,
            "headers": {**t.user, **extra.pop("headers", {})},
            **extra,
        }

    return build


def nonce(body: str) -> Callable[[Target], dict[str, Any]]:
    def build(t: Target) -> dict[str, Any]:
        return {
            "method": "POST",
            "url": t.url("/actors/v2/jobs-manager/nonces"),
            "data": body.encode(),
            "headers": {**t.user, "Content-Type": "application/json"},
        }

    return build


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def callback(**params: str) -> Callable[[Target], dict[str, Any]]:
    base = {"uuid": "{job}", "token": "{token}", "status": "RUNNING"}
    return message("jobs-manager", "{}", **{**base, **params})


NUL = "\x00"
CASES: list[Case] = [
    # Non-finite numbers, anywhere.
    ("nan-in-data", event('{"x":NaN}'), 400, "data/x"),
    ("infinity-in-data", event('{"x":Infinity}'), 400, "data/x"),
    ("minus-infinity-in-data", event('{"x":-Infinity}'), 400, "data/x"),
    ("nan-in-list", event('{"x":[1,2,NaN]}'), 400, "data/x/2"),
    ("nan-deep", event('{"a":{"b":{"c":[{"d":NaN}]}}}'), 400, "data/a/b/c/0/d"),
    ("nan-as-uuid", message("jobs-manager", '{"uuid":NaN,"name":"update"}'), 400, "uuid"),
    ("nan-top-level", message("jobs-manager", "NaN"), 400, ""),
    (
        "nan-in-pipeline",
        message("pipelines-manager", '{"name":"p","components":[NaN]}'),
        400,
        "components/0",
    ),
    (
        "infinity-in-launch",
        message(
            "launcher-proxy",
            '{"parameters":{"sample_id":"s.1"},"job_definition":{"appId":"hostile-app",'
            '"nodeCount":Infinity}}',
        ),
        400,
        "job_definition/nodeCount",
    ),
    ("huge-exponent", event('{"x":1e400}'), 400, "data/x"),
    ("huge-negative-exponent", event('{"x":-1e999}'), 400, "data/x"),
    ("integer-over-64-bits", event('{"x":18446744073709551616}'), 400, "data/x"),
    ("integer-under-64-bits", event('{"x":-9223372036854775809}'), 400, "data/x"),
    ("integer-of-5000-digits", event('{"x":' + "9" * 5000 + "}"), 400, ""),
    # Depth.
    ("depth-65", event(deep(64)), 400, "data" + "/0" * 63),
    ("depth-1000", event(deep(999)), 400, ""),
    ("depth-100k", event(deep(100_000)), 400, ""),
    ("depth-100k-objects", event('{"a":' * 100_000 + "1" + "}" * 100_000), 400, ""),
    ("depth-unbalanced", event("[" * 5000), 400, ""),
    # Strings that are not Unicode, and bytes that are not UTF-8.
    ("lone-surrogate-value", event('{"x":"\\ud800"}'), 400, "data/x"),
    ("lone-low-surrogate", event('{"x":"a\\udc00b"}'), 400, "data/x"),
    ("lone-surrogate-key", event('{"\\ud800":1}'), 400, "data"),
    ("lone-surrogate-in-name", event("{}", '"upd\\ud800ate"'), 400, "name"),
    (
        "lone-surrogate-pipeline-name",
        message("pipelines-manager", '{"name":"\\udfff","components":[]}'),
        400,
        "name",
    ),
    ("overlong-utf8", message("jobs-manager", b'{"x":"\xc0\xaf"}'), 400, ""),
    ("invalid-utf8-byte", message("jobs-manager", b'{"uuid":"\xff"}'), 400, ""),
    ("utf8-bom", message("jobs-manager", b"\xef\xbb\xbf{}"), 400, ""),
    ("utf16-body", message("jobs-manager", '{"uuid":"x"}'.encode("utf-16")), 400, ""),
    ("cesu8-surrogates", message("jobs-manager", b'{"x":"\xed\xa0\x80"}'), 400, ""),
    # Keys.
    (
        "duplicate-key-top",
        message(
            "jobs-manager", '{"uuid":"{job}","name":"update","name":"reset","token":"{token}"}'
        ),
        400,
        "name",
    ),
    ("duplicate-key-nested", event('{"a":{"b":1,"b":2}}'), 400, "data/a/b"),
    ("nul-in-key", event('{"a\\u0000b":1}'), 400, "data"),
    ("key-of-2000-chars", event('{"' + "k" * 2000 + '":1}'), 400, "data"),
    ("key-of-1mb", event('{"' + "k" * 1_048_576 + '":1}'), 413, None),
    ("body-over-limit", event('"' + "x" * 1_100_000 + '"'), 413, None),
    # Syntax and shape.
    ("trailing-garbage", message("jobs-manager", '{"uuid":"x"} junk'), 400, ""),
    ("single-quotes", message("jobs-manager", "{'uuid':'x'}"), 400, ""),
    ("array-body", message("jobs-manager", "[1,2]"), 400, ""),
    ("string-body", message("jobs-manager", '"update"'), 400, ""),
    (
        "xml-content-type",
        lambda t: {
            "method": "POST",
            "url": t.url("/actors/v2/jobs-manager/messages"),
            "data": b"<a/>",
            "headers": {**t.user, "Content-Type": "application/xml"},
        },
        415,
        None,
    ),
    # Unicode look-alikes of event names.
    ("fullwidth-event", event("{}", '"ｕｐｄａｔｅ"'), 400, "name"),
    ("cyrillic-e-event", event("{}", '"updatе"'), 400, "name"),
    ("zero-width-event", event("{}", '"up\\u200bdate"'), 400, "name"),
    ("uppercase-event", event("{}", '"UPDATE"'), 400, "name"),
    ("trailing-space-event", event("{}", '"update "'), 400, "name"),
    ("nul-event", event("{}", '"update\\u0000"'), 400, "name"),
    ("lookalike-status-param", callback(status="FINISHЕD"), 400, "status"),
    # NUL in every parameter, and parameters given twice.
    ("nul-in-uuid-param", callback(uuid="{job}" + NUL), 400, "uuid"),
    ("nul-in-token-param", callback(token="{token}" + NUL), 400, "token"),
    ("nul-in-status-param", callback(status="RUNNING" + NUL), 400, "status"),
    (
        "nul-in-event-param",
        message("jobs-manager", "{}", uuid="{job}", token="{token}", name="update" + NUL),
        400,
        "name",
    ),
    ("nul-in-x-nonce", callback(**{"x-nonce": "abc" + NUL}), 400, "x-nonce"),
    ("nul-in-sync", callback(_abaco_synchronous="true" + NUL), 400, "_abaco_synchronous"),
    ("nul-in-param-name", callback(**{"da" + NUL + "ta": "1"}), 400, "da\x00ta"),
    ("nul-in-read-filter", with_params("/jobs", [("state", "CREATED" + NUL)]), 400, "state"),
    ("nul-in-limit", with_params("/jobs", [("limit", "5" + NUL)]), 400, "limit"),
    ("nul-in-path", with_params("/jobs/%00", []), 400, None),
    (
        "repeated-uuid",
        with_params(
            "/actors/v2/jobs-manager/messages",
            [("uuid", "{job}"), ("uuid", "{job}"), ("token", "{token}"), ("status", "RUNNING")],
            method="POST",
            json={},
        ),
        400,
        "uuid",
    ),
    (
        "repeated-token",
        with_params(
            "/actors/v2/jobs-manager/messages",
            [("uuid", "{job}"), ("token", "{token}"), ("token", "0" * 16), ("status", "RUNNING")],
            method="POST",
            json={},
        ),
        400,
        "token",
    ),
    (
        "repeated-status",
        with_params(
            "/actors/v2/jobs-manager/messages",
            [("uuid", "{job}"), ("token", "{token}"), ("status", "RUNNING"), ("status", "FAILED")],
            method="POST",
            json={},
        ),
        400,
        "status",
    ),
    ("repeated-limit", with_params("/jobs", [("limit", "5"), ("limit", "6")]), 400, "limit"),
    ("url-of-1mb", with_params("/jobs", [("pipeline", "p" * 1_048_576)]), 431, None),
    ("header-of-300kb", with_params("/jobs", [], headers={"X-Big": "h" * 300_000}), 431, None),
    ("param-value-over-limit", with_params("/jobs", [("pipeline", "p" * 9000)]), 400, "pipeline"),
    # Read API parameters.
    ("limit-zero", with_params("/jobs", [("limit", "0")]), 400, "limit"),
    ("limit-negative", with_params("/jobs", [("limit", "-1")]), 400, "limit"),
    ("limit-float", with_params("/jobs", [("limit", "1e3")]), 400, "limit"),
    ("limit-huge", with_params("/jobs", [("limit", "9" * 40)]), 400, "limit"),
    ("state-empty", with_params("/jobs", [("state", "")]), 400, "state"),
    ("state-unknown", with_params("/jobs", [("state", "NOPE")]), 400, "state"),
    ("counts-null", with_params("/jobs", [("counts", "null")]), 400, "counts"),
    ("cursor-garbage", with_params("/jobs", [("cursor", "!!!")]), 400, "cursor"),
    (
        "updated-since-garbage",
        with_params("/jobs", [("updated_since", "yesterday")]),
        400,
        "updated_since",
    ),
    # Nonces: uses and lifetimes out of range.
    ("nonce-maxuses-negative", nonce('{"maxUses":-5}'), 400, "maxUses"),
    ("nonce-maxuses-zero", nonce('{"maxUses":0}'), 400, "maxUses"),
    ("nonce-maxuses-huge", nonce('{"maxUses":1e12}'), 400, "maxUses"),
    ("nonce-maxuses-string", nonce('{"maxUses":"3"}'), 400, "maxUses"),
    ("nonce-expires-1e308", nonce('{"expiresIn":1e308}'), 400, "expiresIn"),
    ("nonce-expires-negative", nonce('{"expiresIn":-1}'), 400, "expiresIn"),
    ("nonce-expires-zero", nonce('{"expiresIn":0}'), 400, "expiresIn"),
    ("nonce-expires-nan", nonce('{"expiresIn":NaN}'), 400, "expiresIn"),
    ("nonce-level-unknown", nonce('{"level":"ROOT"}'), 400, "level"),
    ("nonce-unknown-field", nonce('{"owner":"someone"}'), 400, "owner"),
    # Idempotency keys.
    (
        "idempotency-key-empty",
        with_params(
            "/actors/v2/jobs-manager/messages",
            [],
            method="POST",
            json={},
            headers={"Idempotency-Key": ""},
        ),
        400,
        "Idempotency-Key",
    ),
    (
        "idempotency-key-too-long",
        with_params(
            "/actors/v2/jobs-manager/messages",
            [],
            method="POST",
            json={},
            headers={"Idempotency-Key": "k" * 300},
        ),
        400,
        "Idempotency-Key",
    ),
    (
        "idempotency-key-spaces",
        with_params(
            "/actors/v2/jobs-manager/messages",
            [],
            method="POST",
            json={},
            headers={"Idempotency-Key": "a b"},
        ),
        400,
        "Idempotency-Key",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_hostile_input_is_refused_and_stores_nothing(target: Target, case: Case) -> None:
    _, build, status, path = case
    before = target.stored()
    response = target.http.request(timeout=60, **build(target))
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"].startswith("application/json"), response.text[:300]
    answer = response.json()
    assert answer["status"] == "error" and answer["message"], answer
    assert "Traceback" not in response.text
    if path is not None:
        assert answer["result"].get("path") == path, (answer["message"], answer["result"])
    assert target.stored() == before
    assert target.http.get(target.url("/healthz"), timeout=10).status_code == 200


def test_the_table_is_large_enough() -> None:
    assert len(CASES) >= 60


def test_the_system_still_works_after_the_table(target: Target) -> None:
    """Run after the table (file order): a valid event is applied, nothing was left
    behind by the refused ones, and the server log holds no traceback."""
    done = target.http.post(
        target.url("/actors/v2/jobs-manager/messages"),
        json={"uuid": target.job, "name": "update", "token": target.token, "data": {"ok": 1}},
        params={"_abaco_synchronous": "true"},
        headers=target.user,
        timeout=30,
    )
    assert done.status_code == 200, done.text
    job = target.http.get(target.url(f"/jobs/{target.job}"), headers=target.user).json()
    assert job["result"]["history"][-1]["data"] == {"ok": 1}
    assert "Traceback" not in target.server.output()


def test_twenty_concurrent_posts_with_one_idempotency_key_apply_once(target: Target) -> None:
    before = target.stored()
    body = {"uuid": target.job, "name": "update", "token": target.token, "data": {"n": 20}}
    headers = {**target.user, "Idempotency-Key": "retry-safe-0001"}
    answers: list[requests.Response] = []
    lock, go = threading.Lock(), threading.Barrier(20)

    def post() -> None:
        with requests.Session() as http:
            go.wait()
            got = http.post(
                target.url("/actors/v2/jobs-manager/messages"),
                json=body,
                headers=headers,
                params={"_abaco_synchronous": "true"},
                timeout=60,
            )
            with lock:
                answers.append(got)

    threads = [threading.Thread(target=post) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert [a.status_code for a in answers] == [200] * 20, [a.text for a in answers]
    ids = {a.json()["result"]["executionId"] for a in answers}
    assert len(ids) == 1
    after = target.stored()
    assert after["jobs-manager"] == before["jobs-manager"] + 1
    assert after["history"] == before["history"] + 1
    history = target.http.get(target.url(f"/jobs/{target.job}"), headers=target.user).json()
    assert [h["data"] for h in history["result"]["history"]].count({"n": 20}) == 1

    # The same key with another body is a client bug: 409, nothing applied.
    other = target.http.post(
        target.url("/actors/v2/jobs-manager/messages"),
        json={**body, "data": {"n": 21}},
        headers=headers,
        timeout=30,
    )
    assert other.status_code == 409, other.text
    assert ids.pop() in other.json()["message"]
    assert target.stored() == after


def test_the_cli_sends_an_idempotency_key_and_its_answer_is_the_execution(
    target: Target,
) -> None:
    """`pipelinejobs run` keys every message; the gateway's answer names one execution."""
    body = json.dumps({"uuid": target.job, "name": "update", "token": target.token})
    before = target.stored()["jobs-manager"]
    line = cli_run(target, "-m", body, "jobs-manager")
    assert re.fullmatch(r"execution [A-Za-z0-9]{13}  SUBMITTED", line), line
    assert target.stored()["jobs-manager"] == before + 1


def cli_run(target: Target, *args: str) -> str:
    key = target.user["Authorization"].split()[1]
    return cli("run", "--url", target.server.url, "--key", key, *args)
