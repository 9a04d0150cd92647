"""The read API: pipelines, jobs (filtered, paged, counted), one job, a job's files.

One small world is built over HTTP with a fake clock (so ``updated`` times are
distinct and ordered): two pipelines made through the pipelines-manager, four jobs in
four states moved by events carrying their update tokens, one job indexed twice at
two processing levels, a nonce used once. Then every read endpoint is checked, and
none of the secrets handed out on the way may appear in what it answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from flask.testing import FlaskClient

from pipelinejobs.domain.clock import iso
from pipelinejobs.domain.lifecycle import State
from pipelinejobs.runtime.dispatch import Runtime
from tests.gateway.conftest import (
    MESSAGES,
    PIPELINE,
    SYNC,
    FakeClock,
    bearer,
    deliver_on_publish,
    error_of,
    make_job,
    result_of,
    token_of,
)

OTHER_PIPELINE = {"name": "Other", "components": [{"repo": "sd2e/other:1.0"}]}
L1, L2, L3 = "sample.uw_biofab.1", "sample.uw_biofab.2", "sample.uw_biofab.3"
ARCHIVE = "/products/v2/1064aaf1459c5e42820db822aa4b3990/world/job1"


@dataclass
class World:
    rt: Runtime
    client: FlaskClient
    clock: FakeClock
    headers: dict[str, str]
    pipelines: dict[str, str] = field(default_factory=dict)  # name -> uuid
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> job
    secrets: list[str] = field(default_factory=list)
    before_last: str = ""

    def post(self, actor: str, message: dict[str, Any], **query: str) -> dict[str, Any]:
        self.clock.advance(1)
        response = self.client.post(
            MESSAGES.format(actor),
            json=message,
            query_string={**SYNC, **query},
            headers=self.headers,
        )
        result = result_of(response)
        assert isinstance(result, dict)
        return result

    def event(self, job: str, name: str, **extra: Any) -> None:
        doc = self.jobs[job]
        token = token_of(self.rt, doc)
        self.post("jobs-manager", {"uuid": doc["uuid"], "name": name, "token": token, **extra})

    def get(self, url: str, **query: Any) -> Any:
        return self.client.get(url, query_string=query, headers=self.headers)


@pytest.fixture
def world(clocked: Any, monkeypatch: pytest.MonkeyPatch) -> World:
    rt, app, clock = clocked
    deliver_on_publish(rt, monkeypatch)
    admin_key = app.config["PIPELINEJOBS"].keys.create("admin")[0]
    w = World(rt, app.test_client(), clock, bearer(admin_key), secrets=[admin_key])
    for name, definition in (("a", PIPELINE), ("b", OTHER_PIPELINE)):
        created = w.post("pipelines-manager", definition)["result"]
        w.pipelines[name] = created["uuid"]
        w.secrets.append(created["token"])
    pipeline_a = rt.pipelines.get(w.pipelines["a"])
    pipeline_b = rt.pipelines.get(w.pipelines["b"])
    for name, pipeline, linkage, archive in (
        ("finished", pipeline_a, L1, ARCHIVE),
        ("running", pipeline_a, L2, None),
        ("failed", pipeline_a, L1, None),
        ("created", pipeline_b, L3, None),
    ):
        clock.advance(1)
        w.jobs[name] = make_job(
            rt, pipeline=pipeline, linkage=(linkage,), data={"name": name}, archive=archive
        )
        w.secrets.append(token_of(rt, w.jobs[name]))
    for relative in ("a/1.txt", "a/2.txt", "b/3.csv"):
        rt.storage.write(ARCHIVE, relative, relative.encode())
    w.event("finished", "run")
    w.event("finished", "finish", data={"exit": 0})
    w.event("failed", "run")
    w.event("failed", "fail")
    w.event("running", "run")
    job = w.jobs["finished"]
    for level, pattern in (("1", "^a/"), ("2", "^b/")):
        w.post(
            "jobs-indexer",
            {"uuid": job["uuid"], "name": "index", "level": level, "filters": [pattern]},
            token=token_of(rt, job),
        )
    w.before_last = iso(clock() + 0.5)
    w.event("running", "update", data={"note": "still going"})
    nonce = result_of(
        w.client.post("/actors/v2/jobs-manager/nonces", json={"maxUses": 3}, headers=w.headers),
        201,
    )["id"]
    w.secrets.append(nonce)
    clock.advance(1)
    created = w.jobs["created"]
    callback = {"uuid": created["uuid"], "event": "update", "token": token_of(rt, created)}
    used = w.client.post(
        MESSAGES.format("jobs-manager"), query_string={"x-nonce": nonce, **callback, **SYNC}
    )
    assert result_of(used)["result"]["applied"] is True
    for name, doc in w.jobs.items():
        w.jobs[name] = rt.jobs.get(doc["uuid"])
    return w


def uuids(result: dict[str, Any], key: str = "jobs") -> list[str]:
    return [item["uuid"] for item in result[key]]


# -- pipelines -------------------------------------------------------------------------------


def test_list_and_get_pipelines(world: World) -> None:
    listed = result_of(world.get("/pipelines"))

    assert uuids(listed, "pipelines") == [world.pipelines["b"], world.pipelines["a"]]
    assert listed["next"] is None
    one = result_of(world.get(f"/pipelines/{world.pipelines['a']}"))
    assert one["uuid"] == world.pipelines["a"] and one["name"] == PIPELINE["name"]
    assert "token_rotation" not in one and "version" not in one


def test_pipelines_are_paged(world: World) -> None:
    first = result_of(world.get("/pipelines", limit=1))
    second = result_of(world.get("/pipelines", limit=1, cursor=first["next"]))

    assert uuids(first, "pipelines") + uuids(second, "pipelines") == [
        world.pipelines["b"],
        world.pipelines["a"],
    ]
    assert second["next"] is None


def test_unknown_pipeline_is_404(world: World) -> None:
    ghost = world.rt.pipelines.uuid_for({"name": "x", "components": [{"repo": "none"}]})

    assert ghost in error_of(world.get(f"/pipelines/{ghost}"), 404)["message"]


@pytest.mark.parametrize("which", ["job", "garbage"])
def test_a_pipeline_uuid_of_the_wrong_type_is_400(world: World, which: str) -> None:
    value = world.jobs["created"]["uuid"] if which == "job" else "not-a-uuid"

    error_of(world.get(f"/pipelines/{value}"), 400)


# -- jobs ------------------------------------------------------------------------------------


def test_list_jobs_newest_first_without_history(world: World) -> None:
    listed = result_of(world.get("/jobs"))

    newest_first = ("created", "failed", "running", "finished")
    assert uuids(listed) == [world.jobs[n]["uuid"] for n in newest_first]
    assert all("history" not in job for job in listed["jobs"])
    assert "counts" not in listed


@pytest.mark.parametrize(
    ("states", "expected"),
    [
        (["RUNNING"], {"running"}),
        (["RUNNING", "FAILED"], {"running", "failed"}),
        (["FINISHED", "CREATED", "RETIRED"], {"finished", "created"}),
        (["VALIDATED"], set()),
    ],
)
def test_filter_jobs_by_state(world: World, states: list[str], expected: set[str]) -> None:
    listed = result_of(world.get("/jobs", state=states))

    assert set(uuids(listed)) == {world.jobs[n]["uuid"] for n in expected}


def test_filter_jobs_by_pipeline_and_linkage(world: World) -> None:
    def names(**query: Any) -> set[str]:
        found = set(uuids(result_of(world.get("/jobs", **query))))
        return {n for n, job in world.jobs.items() if job["uuid"] in found}

    assert names(pipeline_uuid=world.pipelines["a"]) == {"finished", "running", "failed"}
    assert names(pipeline_uuid=world.pipelines["b"]) == {"created"}
    assert names(linkage=L1) == {"finished", "failed"}
    assert names(linkage=[L2, L3]) == {"running", "created"}
    assert names(child_of=L3) == {"created"}
    assert names(linkage=L1, state="FAILED") == {"failed"}
    assert names(linkage="sample.nowhere.0") == set()


def test_filter_jobs_updated_since_oldest_change_first(world: World) -> None:
    listed = result_of(world.get("/jobs", updated_since=world.before_last))

    assert uuids(listed) == [world.jobs["running"]["uuid"], world.jobs["created"]["uuid"]]
    assert result_of(world.get("/jobs", updated_since=iso(world.clock() + 10)))["jobs"] == []


@pytest.mark.parametrize(
    "form",
    [
        "{date}T{time}.{ms}Z",
        "{date}T{time}Z",  # no milliseconds: compared as text it would drop this second
        "{date}t{time}z",  # RFC 3339 allows lower case
        "{date}T{time}+00:00",
        "{date}T{shifted}+02:00",
        "{date}T{time}.{ms}123456-00:00",  # more digits than milliseconds
    ],
)
def test_updated_since_accepts_rfc_3339_forms(world: World, form: str) -> None:
    """The last two changes were 1 s apart, at whole seconds on the fake clock."""
    last = world.jobs["created"]["updated"]
    date, clock_time = last[:10], last[11:19]
    hour = int(clock_time[:2])
    shifted = f"{(hour + 2) % 24:02d}{clock_time[2:]}"
    assert hour < 22  # the shifted form stays on the same day
    since = form.format(date=date, time=clock_time, ms=last[20:23], shifted=shifted)

    listed = result_of(world.get("/jobs", updated_since=since))

    assert uuids(listed) == [world.jobs["created"]["uuid"]]


@pytest.mark.parametrize(
    "since",
    [
        "2026-01-31T12:00:00",  # no offset: RFC 3339 needs one
        "2026-01-31T12:00:00 02:00",  # a '+' sent unescaped (it must be %2B)
        "2026-01-31",
        "2026-02-30T12:00:00Z",
        "",
    ],
)
def test_updated_since_that_is_not_rfc_3339_is_400(world: World, since: str) -> None:
    data = error_of(world.get("/jobs", updated_since=since), 400)

    assert data["result"]["path"] == "updated_since"


@pytest.mark.parametrize(
    ("since", "found"),
    [("9999-12-31T23:59:59-23:59", 0), ("0001-01-01T00:00:00+23:59", 4)],
)
def test_updated_since_beyond_the_years_a_date_holds(world: World, since: str, found: int) -> None:
    assert len(result_of(world.get("/jobs", updated_since=since))["jobs"]) == found


@pytest.mark.parametrize("spelling", ["1", "yes", "True", "", "null"])
def test_counts_is_true_or_false_only(world: World, spelling: str) -> None:
    data = error_of(world.get("/jobs", counts=spelling), 400)

    assert data["result"]["path"] == "counts"


def test_counts_cover_all_eleven_states(world: World) -> None:
    everything = result_of(world.get("/jobs", counts="true"))["counts"]
    of_a = result_of(world.get("/jobs", counts="true", pipeline_uuid=world.pipelines["a"]))

    assert list(everything) == list(State.__members__)
    assert len(everything) == 11
    expected = dict.fromkeys(State.__members__, 0)
    expected.update(CREATED=1, RUNNING=1, FINISHED=1, FAILED=1)
    assert everything == expected
    assert of_a["counts"] == {**expected, "CREATED": 0}


@pytest.mark.parametrize("query", [{}, {"pipeline_uuid": "a"}, {"state": ["RUNNING", "FAILED"]}])
@pytest.mark.parametrize("limit", [1, 2, 3])
def test_paging_walks_every_matching_job_once(
    world: World, query: dict[str, Any], limit: int
) -> None:
    if query.get("pipeline_uuid"):
        query = {"pipeline_uuid": world.pipelines["a"]}
    everything = uuids(result_of(world.get("/jobs", **query)))
    walked: list[str] = []
    cursor = None
    for _ in range(10):
        more = {"cursor": cursor} if cursor else {}
        page = result_of(world.get("/jobs", limit=limit, **query, **more))
        assert len(page["jobs"]) <= limit
        walked += uuids(page)
        cursor = page["next"]
        if cursor is None:
            break

    assert walked == everything
    assert len(set(walked)) == len(walked)


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ({"state": "DONE"}, "state"),
        ({"state": ["RUNNING", "running"]}, "state"),
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"limit": "501"}, "limit"),
    ],
)
def test_bad_job_queries_are_400(world: World, query: dict[str, Any], path: str) -> None:
    data = error_of(world.get("/jobs", **query), 400)

    assert data["result"]["path"] == path


def test_a_pipeline_filter_of_the_wrong_type_is_400(world: World) -> None:
    error_of(world.get("/jobs", pipeline_uuid=world.jobs["created"]["uuid"]), 400)


def test_one_job_with_its_history(world: World) -> None:
    job = result_of(world.get(f"/jobs/{world.jobs['finished']['uuid']}"))

    assert job["state"] == "FINISHED"
    assert [h["name"] for h in job["history"]] == [
        "create", "run", "finish", "index", "indexed", "index", "indexed",
    ]  # fmt: skip
    assert job["history"][2]["data"] == {"exit": 0}
    assert all(h["uuid"].startswith("108") for h in job["history"])
    assert "token_rotation" not in job and "version" not in job
    assert "last_entry" not in job and "history_next" not in job
    assert job["event_count"] == 7


def test_a_history_page_says_what_each_event_was_applied_to_and_who_sent_it(
    world: World,
) -> None:
    history = result_of(world.get(f"/jobs/{world.jobs['finished']['uuid']}/history"))["history"]
    assert [h["previous_state"] for h in history] == [
        None, "CREATED", "RUNNING", "FINISHED", "INDEXING", "FINISHED", "INDEXING",
    ]  # fmt: skip
    senders = {h["name"]: h.get("sender") for h in history}
    assert senders["finish"].startswith("key:")  # posted with the world's key
    assert senders["indexed"] == "jobs-indexer"  # sent on by the indexer


def test_a_jobs_history_is_paged(world: World) -> None:
    url = f"/jobs/{world.jobs['finished']['uuid']}/history"
    page = result_of(world.get(url, after=2, limit=3))
    assert [h["name"] for h in page["history"]] == ["finish", "index", "indexed"]
    assert page["next"] == 5 and page["count"] == 7
    assert page["uuid"] == world.jobs["finished"]["uuid"]
    rest = result_of(world.get(url, after=page["next"]))
    assert [h["name"] for h in rest["history"]] == ["index", "indexed"] and rest["next"] is None
    whole = result_of(world.get(url))["history"]
    seed_shaped = [{k: h[k] for k in ("uuid", "name", "date", "data")} for h in whole]
    assert seed_shaped == result_of(world.get(url[: -len("/history")]))["history"]
    assert result_of(world.get(url, after=7))["history"] == []
    for bad in ({"after": -1}, {"limit": 0}, {"limit": 1001}, {"after": "x"}):
        assert error_of(world.get(url, **bad), 400)["result"]["path"] in bad


def test_a_long_history_is_cut_at_1000_and_continued_by_its_pages(world: World) -> None:
    uuid = world.jobs["running"]["uuid"]
    for n in range(1005):
        world.rt.jobs.apply(uuid, "update", {"n": n})
    job = result_of(world.get(f"/jobs/{uuid}"))
    assert len(job["history"]) == 1000 and job["history_next"] == 1000
    assert job["event_count"] == 1008  # create, run, update, then these
    rest = result_of(world.get(f"/jobs/{uuid}/history", after=job["history_next"]))
    assert [h["data"].get("n") for h in rest["history"]] == list(range(997, 1005))
    assert rest["next"] is None


def test_unknown_job_is_404_and_wrong_type_is_400(world: World) -> None:
    ghost = world.rt.ids.job(world.pipelines["a"], ["sample.nowhere.0"], {})
    for suffix in ("", "/files", "/history"):
        assert ghost in error_of(world.get(f"/jobs/{ghost}{suffix}"), 404)["message"]
        error_of(world.get(f"/jobs/{world.pipelines['a']}{suffix}"), 400)
        error_of(world.get(f"/jobs/12345{suffix}"), 400)


def test_files_of_a_job_with_a_level_filter(world: World) -> None:
    url = f"/jobs/{world.jobs['finished']['uuid']}/files"

    every = result_of(world.get(url))
    level_1 = result_of(world.get(url, level="1"))
    level_2 = result_of(world.get(url, level="2"))
    none = result_of(world.get(f"/jobs/{world.jobs['running']['uuid']}/files"))

    def relative(result: dict[str, Any]) -> list[str]:
        return [f["relative_path"] for f in result["files"]]

    assert relative(every) == ["a/1.txt", "a/2.txt", "b/3.csv"]
    assert relative(level_1) == ["a/1.txt", "a/2.txt"]
    assert relative(level_2) == ["b/3.csv"]
    assert result_of(world.get(url, level="3"))["files"] == []
    assert none == {"files": [], "next": None}
    assert all(f["uuid"].startswith("105") for f in every["files"])
    first = result_of(world.get(url, limit=2))
    rest = result_of(world.get(url, limit=2, cursor=first["next"]))
    assert relative(first) + relative(rest) == relative(every)


def test_no_secret_appears_in_any_read_response(world: World) -> None:
    urls = ["/pipelines", "/jobs", "/jobs?counts=true"]
    urls += [f"/pipelines/{uuid}" for uuid in world.pipelines.values()]
    for job in world.jobs.values():
        urls += [f"/jobs/{job['uuid']}", f"/jobs/{job['uuid']}/files"]
    assert len(world.secrets) == 8  # admin key, 2 pipeline and 4 job tokens, a nonce

    for url in urls:
        text = world.client.get(url, headers=world.headers).get_data(as_text=True)
        assert '"status":"success"' in text.replace(" ", "")
        for secret in world.secrets:
            assert secret not in text, (url, secret)
        for word in ("token", "salt", "x-nonce", "secret"):
            assert word not in text, (url, word)


def test_the_read_api_needs_a_bearer_key(world: World) -> None:
    for url in ("/pipelines", "/jobs", f"/jobs/{world.jobs['created']['uuid']}"):
        error_of(world.client.get(url), 401)
