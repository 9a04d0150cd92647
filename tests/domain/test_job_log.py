"""A job's history as a log beside it: paging, the seed-shaped record, and jobs that
still embed their history (written before the log)."""

from __future__ import annotations

import pytest

from pipelinejobs.adapters.store.base import LAST_RECORD
from pipelinejobs.domain import job_log, validation
from pipelinejobs.domain.identifiers import Identifiers
from pipelinejobs.domain.jobs import Jobs
from pipelinejobs.errors import ValidationError

IDS = Identifiers("test.pipelinejobs")
PIPELINE = IDS.pipeline([{"id": "tacobot9000-0.1.0u1", "inputs": {}, "parameters": {}}])


def job_with(jobs: Jobs, updates: int) -> str:
    uuid = str(jobs.create(pipeline_uuid=PIPELINE, linkage=["s.1"], data={}).job["uuid"])
    for n in range(updates):
        jobs.apply(uuid, "update", {"n": n})
    return uuid


def test_pages_walk_the_whole_history_once_in_order(any_store, clock):
    jobs = Jobs(any_store, IDS, clock=clock)
    uuid = job_with(jobs, 11)
    seen, after = [], 0
    while True:
        page = jobs.history(uuid, after=after, limit=5)
        assert page.count == 12
        seen.extend(page.entries)
        if page.next is None:
            break
        assert page.next == after + len(page.entries)
        after = page.next
    assert [h["name"] for h in seen] == ["create", *["update"] * 11]
    assert [h["data"].get("n") for h in seen[1:]] == list(range(11))
    assert jobs.history(uuid, after=12).entries == []
    assert jobs.history(uuid, after=99).next is None


@pytest.mark.parametrize(("after", "limit"), [(-1, 10), (0, 0), (0, job_log.PAGE + 1), (True, 1)])
def test_a_page_out_of_range_is_refused(any_store, clock, after, limit):
    jobs = Jobs(any_store, IDS, clock=clock)
    uuid = job_with(jobs, 0)
    with pytest.raises(ValidationError):
        jobs.history(uuid, after=after, limit=limit)


def test_the_record_inlines_a_bounded_history_and_says_where_the_rest_starts(any_store, clock):
    jobs = Jobs(any_store, IDS, clock=clock)
    uuid = job_with(jobs, 6)
    full = jobs.record(uuid)
    assert len(full["history"]) == 7 and "history_next" not in full
    assert LAST_RECORD not in full and full["event_count"] == 7
    validation.validate("pipelinejob_record", full)
    cut = jobs.record(uuid, limit=3)
    assert [h["name"] for h in cut["history"]] == ["create", "update", "update"]
    assert cut["history_next"] == 3
    assert jobs.history(uuid, after=cut["history_next"]).entries == full["history"][3:]


def test_a_page_agrees_with_the_job_it_was_read_with(any_store, clock):
    """Records appended after the job was read are not shown with it."""
    jobs = Jobs(any_store, IDS, clock=clock)
    uuid = job_with(jobs, 2)
    job = jobs.get(uuid)
    jobs.apply(uuid, "run")
    page = job_log.read(any_store, job)
    assert page.count == 3 and [h["name"] for h in page.entries] == ["create", "update", "update"]


def legacy_job(jobs: Jobs, names: list[str]) -> dict:
    """A job document as the code before the log wrote it: its history embedded."""
    uuid = IDS.job(PIPELINE, ["s.old"], {})
    date = "2026-01-01T00:00:00.000Z"
    history = [
        {"uuid": IDS.event(uuid, f"d{i}"), "name": name, "date": date, "data": {"i": i}}
        for i, name in enumerate(names)
    ]
    doc = {
        "uuid": uuid,
        "pipeline_uuid": PIPELINE,
        "state": "FINISHED",
        "last_event": names[-1],
        "created": date,
        "updated": date,
        "token_rotation": 0,
        "data": {},
        "child_of": ["s.old"],
        "generated_by": [PIPELINE],
        "history": history,
    }
    jobs.store.put_many("jobs", [doc])
    return doc


def test_a_job_that_embeds_its_history_is_read_as_it_is(any_store, clock):
    jobs = Jobs(any_store, IDS, clock=clock)
    doc = legacy_job(jobs, ["create", "run", "finish"])
    record = jobs.record(doc["uuid"])
    assert record["history"] == doc["history"]
    assert jobs.history(doc["uuid"], after=1, limit=1).entries == doc["history"][1:2]
    assert any_store.count("events") == 0  # reading converts nothing


def test_an_event_for_such_a_job_converts_it_first(any_store, clock):
    jobs = Jobs(any_store, IDS, clock=clock)
    doc = legacy_job(jobs, ["create", "run", "finish"])
    result = jobs.apply(doc["uuid"], "index", delivery_id="exec-9")
    assert result.applied and result.previous_state == "FINISHED"
    job = jobs.get(doc["uuid"])
    assert "history" not in job and job["event_count"] == 4
    assert job["version"] == 2  # one write to convert, one to apply
    records = any_store.find("events", {"job_uuid": doc["uuid"]}, order="seq").items
    assert [r["seq"] for r in records] == [1, 2, 3, 4]
    assert [r["previous_state"] for r in records] == [None, "CREATED", "RUNNING", "FINISHED"]
    assert [r["uuid"] for r in records[:3]] == [h["uuid"] for h in doc["history"]]
    assert jobs.record(doc["uuid"])["history"][:3] == doc["history"]
    # An event of the old history redelivered now is still recognised.
    again = jobs.apply(doc["uuid"], "run", delivery_id="d1")
    assert again.duplicate and again.previous_state == "CREATED"


def test_converting_replays_what_the_table_still_allows():
    job = {
        "uuid": IDS.job(PIPELINE, ["x"], {}),
        "updated": "2026-01-01T00:00:00.000Z",
        "history": [
            {"uuid": IDS.event("j", "a"), "name": "create", "date": "d", "data": {}},
            {"name": "run"},  # no uuid: one is derived
            {"uuid": IDS.event("j", "a"), "name": "finish", "data": {}},  # repeats one
            {"name": "validated"},  # not allowed from FINISHED: unknown from here on
            {"name": "retire"},
        ],
    }
    records = job_log.legacy_records(IDS, job)
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert [r["previous_state"] for r in records] == [None, "CREATED", "RUNNING", "FINISHED", None]
    assert len({r["uuid"] for r in records}) == 5
    assert records[1]["date"] == job["updated"]


def test_reading_many_jobs_after_their_positions_matches_reading_each(any_store, clock):
    """Jobs at the same position are read in one query; whatever the grouping, each
    (job, position) gets exactly what reading that job alone gives."""
    jobs = Jobs(any_store, IDS, clock=clock)
    uuids = [str(jobs.create(pipeline_uuid=PIPELINE, linkage=[f"s.m{i}"], data={}).job["uuid"])
             for i in range(4)]  # fmt: skip
    for n in range(3):
        for uuid in uuids[:3]:
            jobs.apply(uuid, "update", {"n": n})
    legacy = legacy_job(jobs, ["create", "run", "finish"])
    docs = [jobs.get(u) for u in uuids]
    jobs.apply(uuids[0], "run")  # after the read: not part of what the job says
    wanted = [(docs[0], 1), (docs[1], 1), (docs[2], 2), (docs[3], 1), (docs[0], 3), (legacy, 1)]
    got = job_log.read_after_many(any_store, wanted)
    for job, after in wanted:
        alone = job_log.read_records(any_store, job, after, job_log.PAGE)[0]
        assert got[job["uuid"], after] == alone, (job["uuid"], after)
    assert [r["seq"] for r in got[uuids[0], 1]] == [2, 3, 4]
    assert got[uuids[3], 1] == []  # nothing after its create
    assert [r["data"] for r in got[legacy["uuid"], 1]] == [{"i": 1}, {"i": 2}]
    # A group too large for one query is read job by job, with the same answer.
    small = job_log.read_after_many(any_store, wanted, most=2)
    assert small == got


def test_reading_many_takes_the_newest_from_the_job_when_the_log_lags(any_store, clock):
    """As :func:`read_records` does (a store without transactions writes the log's
    newest record after the job): the record the job holds is used."""
    jobs = Jobs(any_store, IDS, clock=clock)
    uuids = [job_with(jobs, 1), job_with(jobs, 1)]
    lagging = jobs.get(uuids[1])
    newest = lagging[LAST_RECORD]
    any_store.delete("events", newest["uuid"])
    got = job_log.read_after_many(any_store, [(jobs.get(uuids[0]), 0), (lagging, 0)])
    count = int(lagging["event_count"])
    assert [r["seq"] for r in got[uuids[1], 0]] == list(range(1, count + 1))
    assert got[uuids[1], 0][-1]["uuid"] == newest["uuid"]
    assert got[uuids[1], 0] == job_log.read_records(any_store, lagging, 0, 10)[0]
