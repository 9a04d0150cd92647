"""The jobs-indexer at scale: hostile filters, configured limits, fixity, batches,
progress readable while it runs, and re-indexing a tree that changed.

No test here measures time: that an exponential pattern finishes fast is shown by
what runs it (RE2, never Python's ``re``), and bench/indexer.py puts figures on it.
"""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
import re2

import pipelinejobs.actors.jobs_indexer as jobs_indexer
from pipelinejobs.adapters.storage import CHUNK
from pipelinejobs.config import load_config
from pipelinejobs.domain import validation
from pipelinejobs.errors import ValidationError
from pipelinejobs.gateway import create_app
from pipelinejobs.runtime.dispatch import Runtime
from pipelinejobs.runtime.executions import Executions
from tests.actors.jobs_support import ARCHIVE, make_job, run, token, write_files
from tests.actors.test_launcher_proxy import LAUNCH, launched, register
from tests.support import FakeClock, make_runtime
from tests.support import stub as bus

INDEXER = "jobs-indexer"


def records(rt: Runtime, job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = rt.store.find("files", {"job_uuid": job["uuid"]}, limit=10_000).items
    return {f["relative_path"]: f for f in found}


def index(rt: Runtime, job: dict[str, Any], **extra: Any) -> dict[str, Any]:
    execution = run(rt, INDEXER, {"uuid": job["uuid"], "token": token(rt, job), **extra})
    assert execution["status"] == "COMPLETE", execution["error"]
    return execution


# -- hostile filters -------------------------------------------------------------------------

#: Names that make a backtracking engine explode on ``(a+)+$``: a long run of "a"
#: that the end of the string then refuses (2^n ways to split the run to try).
HOSTILE = {f"{'a' * (40 + i)}!": b"x" for i in range(30)}
#: Names the same pattern does match: they end in a run of "a".
MATCHING = {"a" * 60: b"y", "deep/er/" + "a" * 45: b"z", "b" * 10 + "a": b"w"}


def test_an_exponential_pattern_indexes_long_runs_of_a_correctly(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
):
    compiled: list[Any] = []
    compile_filters = jobs_indexer.compile_filters

    def recording(filters: Any) -> list[Any]:
        out = compile_filters(filters)
        compiled.extend(out)
        return out

    monkeypatch.setattr(jobs_indexer, "compile_filters", recording)
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, {**HOSTILE, **MATCHING})

    execution = index(runtime, job, filters=["(a+)+$"])

    result = execution["result"]
    assert (result["seen"], result["indexed"]) == (len(HOSTILE) + len(MATCHING), len(MATCHING))
    assert set(records(runtime, job)) == set(MATCHING)
    assert runtime.jobs.get(job["uuid"])["state"] == "FINISHED"
    # What ran the pattern: RE2 objects (linear time), never a Python ``re`` pattern.
    assert compiled, "the filters were compiled by the indexer"
    for pattern in compiled:
        assert isinstance(pattern, type(re2.compile("x")))
        assert not isinstance(pattern, re.Pattern)
        assert type(pattern).__module__.startswith("re2")


@pytest.mark.parametrize(
    ("filters", "path"),
    [(["(a)\\1"], "filters/0"), (["^ok$", "(a+)+$", "(a)\\1"], "filters/2")],
    ids=["alone", "third"],
)
def test_a_backreference_is_refused_at_submit(runtime: Runtime, filters: list[str], path: str):
    job = make_job(runtime, state="FINISHED")
    with pytest.raises(ValidationError) as err:
        runtime.submit(INDEXER, {"uuid": job["uuid"], "filters": filters})
    assert err.value.detail["path"] == path
    assert runtime.store.count("executions") == 0
    assert bus(runtime).published == []


# -- configured limits -----------------------------------------------------------------------


def test_more_filters_than_configured_are_refused_naming_the_limit(tmp_path: Path):
    rt = make_runtime(tmp_path, indexer={"max_filters": 3})
    try:
        job = make_job(rt, state="FINISHED")
        write_files(rt, {"x.txt": b"x"})
        with pytest.raises(ValidationError) as err:
            rt.submit(INDEXER, {"uuid": job["uuid"], "filters": ["a", "b", "c", "d"]})
        assert err.value.detail["path"] == "filters"
        assert err.value.detail["limit"] == 3
        assert "at most 3" in err.value.message and "indexer.max_filters" in err.value.message
        assert rt.store.count("executions") == 0
        # Exactly the limit is fine.
        assert index(rt, job, filters=["a", "b", "x"])["result"]["indexed"] == 1
    finally:
        rt.close()


def test_indexer_settings_come_from_the_environment():
    config = load_config(
        env={"PIPELINEJOBS_INDEXER_MAX_FILTERS": "7", "PIPELINEJOBS_INDEXER_BATCH_SIZE": "42"}
    )
    assert (config.indexer.max_filters, config.indexer.batch_size) == (7, 42)
    assert (load_config(env={}).indexer.max_filters, load_config(env={}).indexer.batch_size) == (
        100,
        500,
    )


@pytest.mark.parametrize("key", ["max_filters", "batch_size"])
def test_indexer_settings_must_be_positive(key: str):
    with pytest.raises(Exception, match=f"indexer.{key}"):
        load_config(env={}, overrides={"indexer": {key: 0}})


# -- fixity ----------------------------------------------------------------------------------

CONTENTS = {
    "small.txt": b"hello",
    "empty.dat": b"",
    # Over one read chunk, so the streamed hash crosses chunk boundaries.
    "big/blob.bin": bytes(range(256)) * (CHUNK // 256 * 2 + 3),
}


def test_fixity_records_the_sha256_of_each_file(runtime: Runtime):
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, CONTENTS)

    execution = index(runtime, job, fixity=True)

    assert execution["result"]["fixity"] is True
    found = records(runtime, job)
    assert set(found) == set(CONTENTS)
    for relative, content in CONTENTS.items():
        assert found[relative]["checksum"] == hashlib.sha256(content).hexdigest()
        validation.validate("file", found[relative])
    assert runtime.jobs.record(job["uuid"])["history"][-2]["data"]["fixity"] is True


def test_without_fixity_there_is_no_checksum(runtime: Runtime):
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, CONTENTS)
    index(runtime, job, fixity=True)

    execution = index(runtime, job)

    assert execution["result"]["fixity"] is False
    assert all("checksum" not in f for f in records(runtime, job).values())
    assert "fixity" not in runtime.jobs.record(job["uuid"])["history"][-2]["data"]


@pytest.mark.parametrize(("value", "hashed"), [("true", True), ("1", True), ("false", False)])
def test_fixity_as_a_url_parameter(runtime: Runtime, value: str, hashed: bool):
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, {"small.txt": b"hello"})
    params = {"uuid": job["uuid"], "token": token(runtime, job), "fixity": value}

    execution = run(runtime, INDEXER, None, params)

    assert execution["status"] == "COMPLETE", execution["error"]
    record = records(runtime, job)["small.txt"]
    assert ("checksum" in record) is hashed
    assert execution["result"]["fixity"] is hashed


def test_an_unclear_fixity_parameter_is_refused(runtime: Runtime):
    job = make_job(runtime, state="FINISHED")
    with pytest.raises(ValidationError) as err:
        runtime.submit(INDEXER, None, {"uuid": job["uuid"], "fixity": "maybe"})
    assert err.value.detail["path"] == "fixity"


def test_a_launch_with_index_fixity_is_indexed_with_checksums(runtime: Runtime):
    register(runtime)
    message = copy.deepcopy(LAUNCH)
    message["job_definition"]["outputs"] = {"a.txt": "text", "sub/b.csv": "1,2\n"}
    message["index_fixity"] = True

    result = launched(runtime, message)

    job = runtime.jobs.get(result["uuid"])
    assert job["index"] == {"patterns": [], "level": "1", "fixity": True}
    assert job["state"] == "FINISHED" and job["last_event"] == "indexed"
    validation.validate("pipelinejob", job)
    found = records(runtime, job)
    assert found["a.txt"]["checksum"] == hashlib.sha256(b"text").hexdigest()
    assert found["sub/b.csv"]["checksum"] == hashlib.sha256(b"1,2\n").hexdigest()


def test_a_finish_asks_for_fixity_when_the_job_was_configured_with_it(runtime: Runtime):
    job = make_job(runtime, index={"patterns": [], "level": "2", "fixity": True}, state="RUNNING")
    write_files(runtime, {"out.txt": b"out"})

    execution = run(
        runtime,
        "jobs-manager",
        {"uuid": job["uuid"], "name": "finish", "token": token(runtime, job)},
    )

    sent = runtime.executions.get(execution["result"]["indexing"])
    assert sent["message"]["fixity"] is True
    record = records(runtime, job)["out.txt"]
    assert record["checksum"] == hashlib.sha256(b"out").hexdigest() and record["level"] == "2"


# -- batches and progress --------------------------------------------------------------------


@pytest.fixture
def small_batches(tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    """A runtime (memory and SQLite) whose indexer writes 3 records at a time, and its
    progress after each batch."""
    rt = make_runtime(
        tmp_path,
        getattr(request, "param", "memory"),
        indexer={"batch_size": 3, "progress_interval": 0},
    )
    yield rt
    rt.close()


def spy_on_writes(rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Sizes of the ``put_many`` calls made on the files collection."""
    sizes: list[int] = []
    put_many = rt.store.put_many

    def spying(collection: str, docs: Any) -> int:
        if collection == "files":
            sizes.append(len(docs))
        return put_many(collection, docs)

    monkeypatch.setattr(rt.store, "put_many", spying)
    return sizes


def seen_indexed(progress: dict[str, Any]) -> tuple[int, int]:
    return progress["files_seen"], progress["files_indexed"]


def spy_on_progress(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    reports: list[dict[str, Any]] = []
    progress = Executions.progress

    def recording(self: Executions, execution_id: str, values: Any, *args: Any, **kw: Any) -> Any:
        reports.append(dict(values))
        return progress(self, execution_id, values, *args, **kw)

    monkeypatch.setattr(Executions, "progress", recording)
    return reports


@pytest.mark.parametrize("small_batches", ["memory", "sqlite"], indirect=True)
def test_records_are_written_in_batches_with_progress_per_batch(
    small_batches: Runtime, monkeypatch: pytest.MonkeyPatch
):
    rt = small_batches
    job = make_job(rt, state="FINISHED")
    write_files(rt, {f"d{i % 3}/f{i}.txt": b"x" * i for i in range(10)})
    sizes = spy_on_writes(rt, monkeypatch)
    reports = spy_on_progress(monkeypatch)

    execution = index(rt, job)

    assert sizes == [3, 3, 3, 1]
    assert [(r["files_seen"], r["files_indexed"]) for r in reports] == [
        (3, 3),
        (6, 6),
        (9, 9),
        (10, 10),
    ]
    assert seen_indexed(execution["progress"]) == (10, 10)
    assert rt.store.count("files") == 10


def test_progress_moves_while_a_filter_skips_most_files(
    small_batches: Runtime, monkeypatch: pytest.MonkeyPatch
):
    rt = small_batches
    job = make_job(rt, state="FINISHED")
    write_files(rt, {f"f{i}.{'csv' if i == 7 else 'txt'}": b"x" for i in range(10)})
    reports = spy_on_progress(monkeypatch)

    index(rt, job, filters=["\\.csv$"])

    assert [r["files_seen"] for r in reports] == [3, 6, 9, 10]
    indexed = [r["files_indexed"] for r in reports]  # listing order is the disk's
    assert indexed == sorted(indexed) and indexed[-1] == 1


def test_progress_is_readable_over_http_while_indexing_runs(
    small_batches: Runtime, monkeypatch: pytest.MonkeyPatch
):
    rt = small_batches
    app = create_app(rt)
    client = app.test_client()
    key, _ = app.config["PIPELINEJOBS"].keys.create("admin")
    headers = {"Authorization": f"Bearer {key}"}
    job = make_job(rt, state="FINISHED")
    write_files(rt, {f"f{i}.txt": b"x" for i in range(7)})
    submitted = rt.submit(INDEXER, {"uuid": job["uuid"], "token": token(rt, job)})
    url = f"/actors/v2/{INDEXER}/executions/{submitted['id']}"
    seen_over_http: list[tuple[str, Any]] = []
    put_many = rt.store.put_many

    def looking(collection: str, docs: Any) -> int:
        if collection == "files":  # between batches: what does a client see now?
            result = client.get(url, headers=headers).get_json()["result"]
            progress = result["progress"]
            seen_over_http.append((result["status"], progress and seen_indexed(progress)))
        return put_many(collection, docs)

    monkeypatch.setattr(rt.store, "put_many", looking)
    bus(rt).join()

    assert seen_over_http == [
        ("RUNNING", None),
        ("RUNNING", (3, 3)),
        ("RUNNING", (6, 6)),
    ]
    final = client.get(url, headers=headers).get_json()["result"]
    assert final["status"] == "COMPLETE"
    assert seen_indexed(final["progress"]) == (7, 7)
    assert final["progress"]["files_total"] == 7 and final["progress"]["phase"] == "done"


# -- re-indexing a tree that changed ---------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_reindexing_after_files_were_added_and_deleted(tmp_path: Path, kind: str):
    clock = FakeClock()
    rt = make_runtime(tmp_path, kind, clock, indexer={"batch_size": 4})
    try:
        job = make_job(rt, state="FINISHED")
        write_files(rt, {f"f{i:02d}.txt": b"x" for i in range(10)})
        index(rt, job)
        first = records(rt, job)
        clock.advance(60)
        folder = rt.storage.resolve(ARCHIVE)
        for i in (1, 4, 8):
            (folder / f"f{i:02d}.txt").unlink()
        write_files(rt, {f"new/g{i}.txt": b"y" for i in range(4)})

        again = index(rt, job)["result"]

        assert (again["seen"], again["indexed"], again["vanished"]) == (11, 11, 3)
        now = records(rt, job)
        assert len(now) == 14
        gone = {n for n, f in now.items() if not f["present"]}
        assert gone == {"f01.txt", "f04.txt", "f08.txt"}
        for name in gone:
            assert now[name]["updated"] > first[name]["updated"]
        for name in (f"f{i:02d}.txt" for i in (0, 2, 3, 5, 6, 7, 9)):
            assert now[name]["present"] and now[name]["created"] == first[name]["created"]
        for name in (f"new/g{i}.txt" for i in range(4)):
            assert now[name]["present"] and now[name]["created"] > first["f00.txt"]["created"]

        # Idempotent: the same tree again changes nothing but the dates and versions.
        clock.advance(60)
        third = index(rt, job)["result"]
        assert (third["seen"], third["indexed"], third["vanished"]) == (11, 11, 0)
        assert rt.store.count("files", {"job_uuid": job["uuid"]}) == 14
        assert rt.store.count("files", {"present": False}) == 3

        # A file that comes back is present again, under the same uuid.
        write_files(rt, {"f04.txt": b"back"})
        index(rt, job)
        back = records(rt, job)["f04.txt"]
        assert back["present"] is True and back["uuid"] == first["f04.txt"]["uuid"]
        assert rt.store.count("files", {"present": False}) == 2
    finally:
        rt.close()
