"""Reading a poisoned record over HTTP never answers non-JSON or a bare 500.

A record damaged in the SQLite store (``NaN`` in its text, or text that is not JSON):
reading it answers 500 in the JSON envelope naming the collection, key and reason
(it is there but cannot be read); once a worker has set it aside, 404 "quarantined:
<reason>"; lists skip it. For jobs, executions and nonces.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pipelinejobs.access.keys import digest
from pipelinejobs.adapters.store import codec
from pipelinejobs.adapters.store.sqlite import SQLiteStore
from pipelinejobs.errors import CorruptDocument
from pipelinejobs.runtime.dispatch import Runtime
from tests.gateway.conftest import bearer, error_of, make_job, result_of

MANAGER = "jobs-manager"
POISONS = {"nan": '{"uuid": "%s", "version": 0, "x": NaN}', "not json": "not json"}


@pytest.fixture(autouse=True)
def _fresh_reports() -> Iterator[None]:
    codec._reported.clear()
    yield
    codec._reported.clear()


@pytest.fixture
def world(build: Any) -> tuple[Runtime, FlaskClient, dict[str, str]]:
    rt, app = build("sqlite")
    assert isinstance(app, Flask)
    secret, _ = app.config["PIPELINEJOBS"].keys.create("admin")
    return rt, app.test_client(), bearer(secret)


def poison(rt: Runtime, collection: str, key: str, how: str) -> None:
    assert isinstance(rt.store, SQLiteStore)
    text = POISONS[how].replace("%s", key)
    with sqlite3.connect(rt.store.path) as conn:
        conn.execute(f'UPDATE "{collection}" SET doc = ? WHERE k = ?', (text, key))


def corrupt_answer(response: Any, collection: str, key: str) -> None:
    error = error_of(response, 500)
    assert error["result"]["error"] == "CorruptDocument"
    assert (error["result"]["collection"], error["result"]["key"]) == (collection, key)
    assert error["message"].startswith(f"{collection} record {key} is corrupt: ")


def quarantined_answer(response: Any) -> None:
    error = error_of(response, 404)
    assert error["result"]["error"] == "Quarantined"
    assert "quarantined: its stored text is not strict JSON" in error["message"]


@pytest.mark.parametrize("how", POISONS)
def test_a_poisoned_job(world, how):
    rt, client, admin = world
    job, other = make_job(rt), make_job(rt, data={"n": 2})
    poison(rt, "jobs", job["uuid"], how)
    corrupt_answer(client.get(f"/jobs/{job['uuid']}", headers=admin), "jobs", job["uuid"])
    listed = result_of(client.get("/jobs", headers=admin))
    assert [j["uuid"] for j in listed["jobs"]] == [other["uuid"]]
    counted = result_of(client.get("/jobs?counts=true", headers=admin))
    assert counted["counts"]["CREATED"] == 2  # counted by its index columns: it is there
    with pytest.raises(CorruptDocument) as corrupt:
        rt.store.get("jobs", job["uuid"])
    rt.quarantine.corrupt(corrupt.value)  # what a worker does when it meets it
    quarantined_answer(client.get(f"/jobs/{job['uuid']}", headers=admin))
    quarantined_answer(client.get(f"/jobs/{job['uuid']}/files", headers=admin))


@pytest.mark.parametrize("how", POISONS)
def test_a_poisoned_execution(world, how):
    rt, client, admin = world
    job = make_job(rt)
    message = {"uuid": job["uuid"], "name": "update", "token": "0" * 16}
    poisoned, other = rt.submit(MANAGER, message), rt.submit(MANAGER, message)
    with sqlite3.connect(rt.store.path) as conn:  # type: ignore[attr-defined]
        text = POISONS[how].replace('"uuid"', '"id"').replace("%s", poisoned["id"])
        conn.execute("UPDATE executions SET doc = ? WHERE k = ?", (text, poisoned["id"]))
    url = f"/actors/v2/{MANAGER}/executions"
    corrupt_answer(
        client.get(f"{url}/{poisoned['id']}", headers=admin), "executions", poisoned["id"]
    )
    listed = result_of(client.get(url, headers=admin))
    assert [e["id"] for e in listed["executions"]] == [other["id"]]
    rt.deliver(MANAGER, poisoned["id"])  # a worker meets it: quarantined
    quarantined_answer(client.get(f"{url}/{poisoned['id']}", headers=admin))
    quarantined_answer(client.get(f"{url}/{poisoned['id']}/logs", headers=admin))


@pytest.mark.parametrize("how", POISONS)
def test_a_poisoned_nonce(world, how):
    rt, client, admin = world
    url = f"/actors/v2/{MANAGER}/nonces"
    secret, other = (
        result_of(client.post(url, json={"maxUses": 3}, headers=admin), 201)["id"] for _ in "ab"
    )
    stored, shown = digest(secret), digest(secret)[:12]
    poison(rt, "nonces", stored, how)
    corrupt_answer(client.get(f"{url}/{shown}", headers=admin), "nonces", stored)
    assert [n["id"] for n in result_of(client.get(url, headers=admin))] == [other]
    used = client.get(f"/actors/v2/{MANAGER}/executions", query_string={"x-nonce": secret})
    assert "moved to the quarantine" in error_of(used, 401)["message"]
    quarantined_answer(client.get(f"{url}/{shown}", headers=admin))
