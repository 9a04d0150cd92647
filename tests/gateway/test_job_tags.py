"""Owners and tags on jobs (issue 15), over HTTP on the memory and SQLite stores.

A job launched (or created) records the key that sent it as ``owner`` and the
launch's ``tags``; a jobs-manager ``tag`` message changes them with the job's token,
an admin token or an admin key, as an ``update`` in the history, and is refused on a
RETIRED job. ``GET /jobs?tag=k:v&owner=`` combine with the other filters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pipelinejobs.runtime.dispatch import Runtime
from tests.gateway.conftest import (
    APP_PIPELINE,
    MESSAGES,
    SYNC,
    bearer,
    deliver_on_publish,
    error_of,
    result_of,
    token_of,
)

APP_ID = APP_PIPELINE["components"][0]["id"]  # type: ignore[index]


@dataclass
class World:
    rt: Runtime
    client: FlaskClient
    admin: dict[str, str]
    user: dict[str, str]
    other: dict[str, str]
    ids: dict[str, str]  # who -> the key's listed id

    def post(self, actor: str, message: dict[str, Any], who: str = "user", **query: Any) -> Any:
        headers = getattr(self, who)
        return self.client.post(
            MESSAGES.format(actor), json=message, query_string={**SYNC, **query}, headers=headers
        )

    def done(self, actor: str, message: dict[str, Any], who: str = "user") -> dict[str, Any]:
        execution = result_of(self.post(actor, message, who))
        assert execution["status"] == "COMPLETE", execution
        result: dict[str, Any] = execution["result"]
        return result

    def launch(self, sample: str, who: str = "user", **extra: Any) -> dict[str, Any]:
        return self.done(
            "launcher-proxy",
            {
                "parameters": {"sample_id": sample},
                "job_definition": {"appId": APP_ID},
                **extra,
            },
            who,
        )

    def jobs(self, **query: Any) -> list[str]:
        result = result_of(self.client.get("/jobs", query_string=query, headers=self.user))
        return sorted(job["uuid"] for job in result["jobs"])


def make_world(rt: Runtime, app: Flask, monkeypatch: pytest.MonkeyPatch) -> World:
    """A world on ``rt``/``app``: messages delivered as they are published, an admin
    key, two user keys, and the app pipeline registered."""
    deliver_on_publish(rt, monkeypatch)
    keys = app.config["PIPELINEJOBS"].keys
    made = {who: keys.create(role) for who, role in (("admin", "admin"), ("user", "user"))}
    made["other"] = keys.create("user")
    w = World(
        rt,
        app.test_client(),
        *(bearer(made[who][0]) for who in ("admin", "user", "other")),
        ids={who: doc["id"][:12] for who, (_, doc) in made.items()},
    )
    w.done("pipelines-manager", APP_PIPELINE, "admin")
    return w


@pytest.fixture(params=["memory", "sqlite"])
def world(
    request: pytest.FixtureRequest,
    build: Callable[..., tuple[Runtime, Flask]],
    monkeypatch: pytest.MonkeyPatch,
) -> World:
    return make_world(*build(request.param), monkeypatch)


def test_a_launch_records_its_owner_and_tags(world: World) -> None:
    launched = world.launch("sample.tacc.1", tags={"experiment": "e1", "batch": "7"})

    job = result_of(world.client.get(f"/jobs/{launched['uuid']}", headers=world.user))
    assert job["owner"] == world.ids["user"]
    assert job["tags"] == {"batch": "7", "experiment": "e1"}
    assert job["tag_pairs"] == ["batch:7", "experiment:e1"]


def test_a_created_job_records_its_owner_and_tags(world: World) -> None:
    pipeline = world.rt.pipelines.resolve(uuid=None, app_id=APP_ID)["uuid"]
    created = world.done(
        "launcher-proxy",
        {
            "action": "create",
            "pipeline_uuid": pipeline,
            "parameters": {"sample_id": "sample.tacc.c"},
            "tags": {"k": "v"},
        },
        "other",
    )
    job = world.rt.jobs.get(created["uuid"])
    assert job["owner"] == world.ids["other"] and job["tags"] == {"k": "v"}


def test_jobs_filter_by_tag_and_owner_with_the_other_filters(world: World) -> None:
    a = world.launch("sample.tacc.a", tags={"experiment": "e1"})["uuid"]
    b = world.launch("sample.tacc.b", tags={"experiment": "e2"})["uuid"]
    c = world.launch("sample.tacc.c", "other", tags={"experiment": "e1"})["uuid"]
    token = token_of(world.rt, world.rt.jobs.get(c))
    world.done("jobs-manager", {"uuid": c, "name": "retire", "token": token}, "other")

    assert world.jobs(tag="experiment:e1") == sorted([a, c])
    assert world.jobs(owner=world.ids["user"]) == sorted([a, b])
    assert world.jobs(owner="me") == sorted([a, b])
    assert world.jobs(tag="experiment:e1", owner=world.ids["other"]) == [c]
    assert world.jobs(tag="experiment:e1", state="RETIRED") == [c]
    assert world.jobs(tag="experiment:e1", state="FINISHED") == [a]
    assert world.jobs(tag="experiment:e3") == []
    assert world.jobs(tag="experiment:") == []
    counted = result_of(
        world.client.get(
            "/jobs", query_string={"tag": "experiment:e1", "counts": "true"}, headers=world.user
        )
    )
    assert counted["counts"]["RETIRED"] == 1 and counted["counts"]["FINISHED"] == 1


def test_a_tag_filter_pages(world: World) -> None:
    made = {world.launch(f"sample.tacc.p{i}", tags={"run": "r"})["uuid"] for i in range(5)}
    seen: list[str] = []
    cursor = None
    while True:
        query = {"tag": "run:r", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = result_of(world.client.get("/jobs", query_string=query, headers=world.user))
        seen += [job["uuid"] for job in page["jobs"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(made)


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ({"tag": "no-colon"}, "tag"),
        ({"tag": "bad key:v"}, "tag"),
        ({"tag": ["a:1", "b:2"]}, "tag"),
        ({"owner": "someone"}, "owner"),
        ({"owner": "ABCDEF012345"}, "owner"),
    ],
)
def test_bad_tag_and_owner_filters_are_400_naming_them(
    world: World, query: dict[str, Any], path: str
) -> None:
    error = error_of(world.client.get("/jobs", query_string=query, headers=world.user), 400)
    assert error["result"]["path"] == path
    assert repr(path) in error["message"]


def tag(world: World, uuid: str, who: str = "user", **fields: Any) -> Any:
    return world.post("jobs-manager", {"action": "tag", "uuid": uuid, **fields}, who)


def test_a_tag_message_changes_tags_and_is_recorded_in_history(world: World) -> None:
    uuid = world.launch("sample.tacc.t", tags={"a": "1", "b": "2"})["uuid"]
    token = token_of(world.rt, world.rt.jobs.get(uuid))
    state = world.rt.jobs.get(uuid)["state"]

    done = result_of(tag(world, uuid, token=token, set={"c": "3", "a": "9"}, remove=["b"]))

    assert done["status"] == "COMPLETE", done
    assert done["result"]["tags"] == {"a": "9", "c": "3"}
    job = world.rt.jobs.get(uuid)
    assert job["tags"] == {"a": "9", "c": "3"} and job["tag_pairs"] == ["a:9", "c:3"]
    assert job["state"] == state
    last = world.rt.jobs.history(uuid).entries[-1]
    assert last["name"] == "update"
    assert last["data"] == {"tags": {"set": {"c": "3", "a": "9"}, "remove": ["b"]}}
    assert world.jobs(tag="a:9") == [uuid] and world.jobs(tag="b:2") == []


def test_an_admin_key_tags_without_the_token(world: World) -> None:
    uuid = world.launch("sample.tacc.adm")["uuid"]

    done = result_of(tag(world, uuid, "admin", set={"x": "y"}))

    assert done["status"] == "COMPLETE", done
    assert world.rt.jobs.get(uuid)["tags"] == {"x": "y"}


def test_a_tag_without_the_token_is_403(world: World) -> None:
    uuid = world.launch("sample.tacc.nt")["uuid"]

    error = error_of(tag(world, uuid, "other", set={"x": "y"}), 403)

    assert "to change the tags of" in error["message"]
    assert world.rt.jobs.get(uuid)["tags"] == {}


def test_a_tag_on_a_retired_job_is_409_naming_the_reason(world: World) -> None:
    uuid = world.launch("sample.tacc.r")["uuid"]
    token = token_of(world.rt, world.rt.jobs.get(uuid))
    world.done("jobs-manager", {"uuid": uuid, "name": "retire", "token": token})
    count = world.rt.jobs.get(uuid)["event_count"]

    error = error_of(tag(world, uuid, token=token, set={"x": "y"}), 409)

    assert error["message"] == (f"job {uuid} is RETIRED: the tags of a RETIRED job cannot change")
    assert world.rt.jobs.get(uuid)["event_count"] == count


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({}, ""),
        ({"set": {"bad key": "v"}}, "set"),
        ({"set": {"k": "x" * 257}}, "set/k"),
        ({"set": {f"k{i}": "v" for i in range(33)}}, "set"),
        ({"remove": ["a:b"]}, "remove/0"),
        ({"set": {"k": "v"}, "extra": 1}, ""),
    ],
)
def test_a_malformed_tag_message_is_400(world: World, fields: dict[str, Any], path: str) -> None:
    uuid = world.launch("sample.tacc.m")["uuid"]

    error = error_of(tag(world, uuid, "admin", **fields), 400)

    assert error["result"].get("path", "") == path, error


def test_too_many_tags_after_a_change_or_one_set_and_removed_is_refused(world: World) -> None:
    uuid = world.launch("sample.tacc.n", tags={f"k{i}": "v" for i in range(30)})["uuid"]

    over = error_of(tag(world, uuid, "admin", set={"x": "1", "y": "2", "z": "3"}), 400)
    assert (
        over["message"]
        == "a job holds at most 32 tags; this change would leave 33 (remove some first)"
    )
    assert len(world.rt.jobs.get(uuid)["tags"]) == 30

    error = error_of(tag(world, uuid, "admin", set={"x": "1"}, remove=["x"]), 400)
    assert error["message"] == "tag 'x' is both set and removed: send one or the other"
