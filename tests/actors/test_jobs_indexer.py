"""The jobs-indexer: the seed's index and indexed messages, filters, file records,
re-indexing, vanished files, refusals and progress."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.domain import validation
from pipelinejobs.domain.identifiers import uuid_type
from pipelinejobs.errors import ValidationError
from pipelinejobs.runtime.dispatch import Runtime
from pipelinejobs.runtime.executions import Executions
from tests.actors.jobs_support import (
    ARCHIVE,
    SEED_FILTERS,
    executions_of,
    make_job,
    names,
    run,
    token,
    write_files,
)
from tests.support import FakeClock, make_runtime
from tests.support import stub as bus

INDEXER = "jobs-indexer"
FILES = {
    "sample.uw_biofab.141715/reads.fastq": b"ACGTACGT",
    "sample-uw_biofab-141715.csv": b"a,b\n1,2\n",
    "sampleXuw_biofabX141715/decoy.txt": b"matches only if the escaped dots are not decoded",
    "other/unrelated.png": b"\x89PNG",
}
SEED_SELECTED = ["sample-uw_biofab-141715.csv", "sample.uw_biofab.141715/reads.fastq"]


def indexed_files(rt: Runtime, job: dict) -> dict[str, dict]:
    found = rt.store.find("files", {"job_uuid": job["uuid"]}, limit=1000).items
    return {f["relative_path"]: f for f in found}


def counts(execution: dict) -> tuple[int, int, int]:
    """(files_seen, files_indexed, files_total) of an execution's progress."""
    progress = execution["progress"]
    return progress["files_seen"], progress["files_indexed"], progress["files_total"]


def seed_request(job: dict, tok: str) -> dict:
    """The seed's 'Index Request as JSON' example, for ``job``."""
    return {
        "uuid": job["uuid"],
        "name": "index",
        "filters": SEED_FILTERS,
        "level": "2",
        "token": tok,
    }


def test_the_seed_json_index_request(runtime: Runtime):
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, FILES)
    execution = run(runtime, INDEXER, seed_request(job, token(runtime, job)))
    assert execution["status"] == "COMPLETE", execution["error"]
    result = execution["result"]
    assert result["uuid"] == job["uuid"] and result["level"] == "2"
    assert (result["seen"], result["indexed"], result["vanished"]) == (4, 2, 0)
    files = indexed_files(runtime, job)
    assert sorted(files) == SEED_SELECTED
    assert {f["level"] for f in files.values()} == {"2"}

    after = runtime.jobs.record(job["uuid"])
    assert after["state"] == "FINISHED"
    assert names(after)[-2:] == ["index", "indexed"]
    # The index event names the execution whose progress a follower can show.
    assert after["history"][-2]["data"] == {
        "level": "2",
        "filters": SEED_FILTERS,
        "execution": execution["id"],
    }

    # ``indexed`` went to the jobs-manager as a child of this execution.
    indexed = runtime.executions.get(result["indexed_execution"])
    assert indexed["actor"] == "jobs-manager" and indexed["status"] == "COMPLETE"
    assert indexed["parent"] == execution["id"] and indexed["sender"] == INDEXER
    assert indexed["message"] == {
        "uuid": job["uuid"],
        "name": "indexed",
        "token": token(runtime, job),
    }


def test_the_seed_url_param_index_request(runtime: Runtime):
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, FILES)
    params = {"uuid": job["uuid"], "level": "2", "token": token(runtime, job), "name": "index"}
    execution = run(runtime, INDEXER, {"filters": SEED_FILTERS}, params)
    assert execution["status"] == "COMPLETE", execution["error"]
    assert execution["result"]["level"] == "2"
    assert sorted(indexed_files(runtime, job)) == SEED_SELECTED
    assert runtime.jobs.get(job["uuid"])["state"] == "FINISHED"


@pytest.mark.parametrize("body", [None, {"filters": ["csv$"]}], ids=["url-only", "also-in-body"])
def test_filters_as_a_url_parameter_are_refused_in_the_seeds_words(
    runtime: Runtime, body: dict[str, Any] | None
):
    """The seed: "filters cannot currently be passed as URL parameters". Dropping them
    would index every file and overwrite levels other requests set: refused, 400."""
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, FILES)
    params = {"uuid": job["uuid"], "token": token(runtime, job), "filters": "nothing-matches"}
    executions = runtime.store.count("executions")

    with pytest.raises(ValidationError) as err:
        runtime.submit(INDEXER, body, params)

    assert err.value.message == (
        "filters cannot currently be passed as URL parameters: send them in the JSON body "
        '({"filters": [...]}), with the other fields as URL parameters or in the body too'
    )
    assert err.value.detail["path"] == "filters"
    assert runtime.store.count("executions") == executions
    assert indexed_files(runtime, job) == {}


def test_a_json_body_wins_over_url_params(runtime: Runtime):
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, FILES)
    message = {"uuid": job["uuid"], "level": "3", "token": token(runtime, job)}
    execution = run(runtime, INDEXER, message, {"level": "0"})
    assert execution["result"]["level"] == "3"


@pytest.mark.parametrize(
    ("message", "params"),
    [
        ({"name": "index"}, {}),
        ({}, {}),
        (None, {"name": "index"}),
        (None, {}),
    ],
    ids=["json", "json-without-name", "params", "params-without-name"],
)
def test_level_defaults_to_1(runtime: Runtime, message, params):
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, {"out.txt": b"x"})
    if message is not None:
        message = {**message, "uuid": job["uuid"], "token": token(runtime, job)}
    else:
        params = {**params, "uuid": job["uuid"], "token": token(runtime, job)}
    execution = run(runtime, INDEXER, message, params)
    assert execution["status"] == "COMPLETE", execution["error"]
    assert execution["result"]["level"] == "1"
    assert [f["level"] for f in indexed_files(runtime, job).values()] == ["1"]


@pytest.mark.parametrize(
    ("filters", "selected"),
    [
        ([], ["a/x.csv", "a/y.txt", "b/x.csv", "top.csv"]),
        (["^a/"], ["a/x.csv", "a/y.txt"]),
        (["\\.csv$"], ["a/x.csv", "b/x.csv", "top.csv"]),
        (["^top", "^b/"], ["b/x.csv", "top.csv"]),
        (["%5Ea%2F.%2A%5C.txt%24"], ["a/y.txt"]),  # URL-encoded ^a/.*\.txt$
        # The archive path itself is not part of what filters see.
        (["datahash", "^/products", "linkhash/"], []),
    ],
    ids=["none", "prefix", "suffix", "any-of", "url-encoded", "archive-path-not-seen"],
)
def test_filters_select_by_path_relative_to_the_archive(runtime: Runtime, filters, selected):
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, {name: b"1" for name in ["a/x.csv", "a/y.txt", "b/x.csv", "top.csv"]})
    message = {"uuid": job["uuid"], "filters": filters, "token": token(runtime, job)}
    execution = run(runtime, INDEXER, message)
    assert execution["status"] == "COMPLETE", execution["error"]
    assert sorted(indexed_files(runtime, job)) == selected
    assert execution["result"]["seen"] == 4
    assert execution["result"]["indexed"] == len(selected)


def test_file_records(runtime: Runtime):
    job = make_job(runtime, linkage=("sample.b.2", "sample.a.1"), state="FINISHED")
    write_files(runtime, {"deep/er/plot.png": b"0123456789", "table.csv": b""})
    run(runtime, INDEXER, {"uuid": job["uuid"], "level": "Reference", "token": token(runtime, job)})
    files = indexed_files(runtime, job)
    assert sorted(files) == ["deep/er/plot.png", "table.csv"]
    plot = files["deep/er/plot.png"]
    path = f"{ARCHIVE}/deep/er/plot.png"
    assert uuid_type(plot["uuid"]) == "file"
    assert plot["uuid"] == runtime.ids.file(runtime.storage.system, path)
    assert plot["name"] == "plot.png"
    assert plot["path"] == path
    assert plot["relative_path"] == "deep/er/plot.png"
    assert plot["storage_system"] == runtime.storage.system
    assert plot["size"] == 10 and files["table.csv"]["size"] == 0
    assert plot["type"] == "image/png" and files["table.csv"]["type"] == "text/csv"
    assert plot["level"] == "Reference"
    assert plot["generated_by"] == [job["uuid"]]
    assert plot["child_of"] == ["sample.a.1", "sample.b.2"] == job["child_of"]
    assert plot["job_uuid"] == job["uuid"]
    assert plot["present"] is True
    assert plot["version"] == 0
    for record in files.values():
        validation.validate("file", record)
    assert files["table.csv"]["uuid"] != plot["uuid"]


def test_the_job_is_indexing_while_files_are_listed(runtime: Runtime, monkeypatch):
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, {"out.txt": b"x"})
    seen: list[str] = []
    walk = runtime.storage.walk

    def watching_walk(archive_path: str):
        seen.append(runtime.jobs.get(job["uuid"])["state"])
        yield from walk(archive_path)

    monkeypatch.setattr(runtime.storage, "walk", watching_walk)
    run(runtime, INDEXER, {"uuid": job["uuid"], "token": token(runtime, job)})
    assert seen == ["INDEXING"]
    after = runtime.jobs.record(job["uuid"])
    assert after["state"] == "FINISHED"
    assert names(after) == ["create", "run", "finish", "index", "indexed"]


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_reindexing_is_idempotent(tmp_path: Path, kind):
    clock = FakeClock()
    rt = make_runtime(tmp_path, kind, clock)
    try:
        job = make_job(rt, state="FINISHED")
        write_files(rt, FILES)
        request = {"uuid": job["uuid"], "token": token(rt, job)}
        run(rt, INDEXER, request)
        first = indexed_files(rt, job)
        clock.advance(3600)
        second_run = run(rt, INDEXER, request)
        assert second_run["result"]["vanished"] == 0
        second = indexed_files(rt, job)
        assert rt.store.count("files") == len(FILES)
        assert {k: v["uuid"] for k, v in second.items()} == {k: v["uuid"] for k, v in first.items()}
        for name, record in second.items():
            assert record["created"] == first[name]["created"]
            assert record["updated"] > first[name]["updated"]
            assert record["version"] == first[name]["version"] + 1
        assert names(rt.jobs.record(job["uuid"]))[-4:] == ["index", "indexed", "index", "indexed"]
    finally:
        rt.close()


def test_a_file_deleted_between_runs_is_marked_absent(runtime: Runtime):
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, FILES)
    request = {"uuid": job["uuid"], "token": token(runtime, job)}
    run(runtime, INDEXER, request)
    gone = runtime.storage.resolve(ARCHIVE) / "other/unrelated.png"
    gone.unlink()
    execution = run(runtime, INDEXER, request)
    assert execution["result"]["vanished"] == 1
    assert execution["result"]["seen"] == len(FILES) - 1
    files = indexed_files(runtime, job)
    assert files["other/unrelated.png"]["present"] is False
    validation.validate("file", files["other/unrelated.png"])
    assert {n for n, f in files.items() if f["present"]} == set(FILES) - {"other/unrelated.png"}
    assert runtime.store.count("files", {"present": False}) == 1
    # Counted once: a third run does not report it again.
    assert run(runtime, INDEXER, request)["result"]["vanished"] == 0


def test_a_file_filtered_out_later_keeps_its_record(runtime: Runtime):
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, FILES)
    tok = token(runtime, job)
    run(runtime, INDEXER, {"uuid": job["uuid"], "token": tok})
    execution = run(runtime, INDEXER, {"uuid": job["uuid"], "filters": ["^other/"], "token": tok})
    assert execution["result"]["vanished"] == 0
    assert all(f["present"] for f in indexed_files(runtime, job).values())


@pytest.mark.parametrize(
    ("filters", "path"),
    [
        (["(?<=x)y"], "filters/0"),
        (["ok", "\\1(a)"], "filters/1"),
        (["%28unclosed"], "filters/0"),
    ],
    ids=["lookbehind", "backreference", "url-encoded-unbalanced"],
)
def test_a_filter_re2_refuses_is_refused_at_submit(runtime: Runtime, filters, path):
    job = make_job(runtime, state="FINISHED")
    message = {"uuid": job["uuid"], "filters": filters, "token": token(runtime, job)}
    with pytest.raises(ValidationError) as err:
        runtime.submit(INDEXER, message)
    assert err.value.detail["path"] == path
    assert runtime.store.count("executions") == 0
    assert bus(runtime).published == []


def test_too_many_filters_are_refused(runtime: Runtime):
    job = make_job(runtime, state="FINISHED")
    limit = runtime.config.indexer.max_filters
    message = {"uuid": job["uuid"], "filters": ["a"] * (limit + 1)}
    with pytest.raises(ValidationError) as err:
        runtime.submit(INDEXER, message, {"token": token(runtime, job)})
    assert err.value.detail["path"] == "filters"
    assert err.value.detail["limit"] == limit and str(limit) in err.value.message


@pytest.mark.parametrize(
    ("message", "path"),
    [
        ({"uuid": "1063f4ff-c2b9-5190-bd9a-e6a406d9796a", "name": "index"}, "uuid"),
        ({"uuid": "1073f4ff-c2b9-5190-bd9a-e6a406d9796a", "level": "4"}, "level"),
        ({"uuid": "1073f4ff-c2b9-5190-bd9a-e6a406d9796a", "name": "reindex"}, "name"),
        ({"uuid": "1073f4ff-c2b9-5190-bd9a-e6a406d9796a", "filters": "x"}, "filters"),
        ({"uuid": "1073f4ff-c2b9-5190-bd9a-e6a406d9796a", "token": "0dc73dc3ff39b49"}, "token"),
    ],
)
def test_malformed_index_requests_are_refused(runtime: Runtime, message, path):
    with pytest.raises(ValidationError) as err:
        runtime.submit(INDEXER, message)
    assert err.value.detail["path"] == path
    assert runtime.store.count("executions") == 0


def test_a_hostile_regex_runs_in_linear_time(runtime: Runtime):
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, {"a" * 200 + "!": b"x"})
    # Exponential for a backtracking engine on this name; linear for RE2.
    message = {"uuid": job["uuid"], "filters": ["^(a+)+$"], "token": token(runtime, job)}
    execution = run(runtime, INDEXER, message)
    assert execution["status"] == "COMPLETE"
    assert execution["result"]["indexed"] == 0


@pytest.mark.parametrize("state", ["INDEXING", "FINISHED"])
def test_indexed_sent_to_the_indexer_marks_the_job_finished(runtime: Runtime, state):
    job = make_job(runtime, state="FINISHED")
    if state == "INDEXING":
        runtime.jobs.apply(job["uuid"], "index")
    message = {"uuid": job["uuid"], "name": "indexed", "token": token(runtime, job)}
    execution = run(runtime, INDEXER, message)
    assert execution["status"] == "COMPLETE", execution["error"]
    assert execution["result"] == {"uuid": job["uuid"], "state": "FINISHED", "applied": True}
    assert names(runtime.jobs.record(job["uuid"]))[-1] == "indexed"
    assert executions_of(runtime, "jobs-manager") == []


def test_indexed_as_url_params(runtime: Runtime):
    job = make_job(runtime, state="FINISHED")
    runtime.jobs.apply(job["uuid"], "index")
    params = {"uuid": job["uuid"], "name": "indexed", "token": token(runtime, job)}
    execution = run(runtime, INDEXER, None, params)
    assert execution["result"]["state"] == "FINISHED"


def test_indexed_needs_a_token(runtime: Runtime):
    job = make_job(runtime, state="FINISHED")
    job = runtime.jobs.apply(job["uuid"], "index").job
    execution = run(runtime, INDEXER, {"uuid": job["uuid"], "name": "indexed"})
    assert execution["error"]["error"] == "PermissionDenied"
    assert runtime.jobs.get(job["uuid"])["state"] == "INDEXING"


@pytest.mark.parametrize("state", ["CREATED", "RUNNING"])
def test_index_on_a_job_not_finished_is_refused(runtime: Runtime, state):
    job = make_job(runtime, state=state)
    write_files(runtime, FILES)
    execution = run(runtime, INDEXER, {"uuid": job["uuid"], "token": token(runtime, job)})
    assert execution["status"] == "ERROR"
    error = execution["error"]
    assert error["error"] == "TransitionRefused"
    assert (error["state"], error["event"]) == (state, "index")
    assert error["allowed"] == ["FINISHED", "INDEXING"]
    assert runtime.store.count("files") == 0
    after = runtime.jobs.get(job["uuid"])
    assert after["version"] == job["version"] and after["state"] == state


@pytest.mark.parametrize("tok", [None, "0123456789abcdef"], ids=["missing", "wrong"])
def test_index_without_the_token_is_refused(runtime: Runtime, tok):
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, FILES)
    message = {"uuid": job["uuid"], "name": "index"}
    if tok:
        message["token"] = tok
    execution = run(runtime, INDEXER, message)
    assert execution["status"] == "ERROR"
    assert execution["error"]["error"] == "PermissionDenied"
    assert runtime.store.count("files") == 0
    assert runtime.jobs.get(job["uuid"])["version"] == job["version"]
    assert executions_of(runtime, "jobs-manager") == []


def test_index_with_an_admin_token(runtime: Runtime):
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, {"out.txt": b"x"})
    message = {"uuid": job["uuid"], "token": runtime.tokens.mint_admin_token()}
    execution = run(runtime, INDEXER, message)
    assert execution["status"] == "COMPLETE"
    # The follow-up ``indexed`` carries the job's own token, not the admin token.
    indexed = runtime.executions.get(execution["result"]["indexed_execution"])
    assert indexed["message"]["token"] == token(runtime, job)
    assert indexed["status"] == "COMPLETE"


def test_index_of_a_job_without_archive_path_leaves_it_finished(runtime: Runtime):
    """Regression: the job used to be moved to INDEXING, then left there."""
    job = make_job(runtime, archive=None, state="FINISHED")
    execution = run(runtime, INDEXER, {"uuid": job["uuid"], "token": token(runtime, job)})
    assert execution["status"] == "ERROR"
    assert execution["error"]["error"] == "ValidationError"
    assert execution["error"]["path"] == "archive_path"
    after = runtime.jobs.get(job["uuid"])
    assert after["state"] == "FINISHED" and after["version"] == job["version"]


def test_index_of_an_archive_path_outside_the_root_is_refused(runtime: Runtime):
    job = make_job(runtime, archive="/products/../../etc", state="FINISHED")
    execution = run(runtime, INDEXER, {"uuid": job["uuid"], "token": token(runtime, job)})
    assert execution["error"]["error"] == "ValidationError"
    assert runtime.jobs.get(job["uuid"])["state"] == "FINISHED"


def test_an_empty_or_missing_archive_directory_indexes_nothing(runtime: Runtime):
    job = make_job(runtime, state="FINISHED")
    execution = run(runtime, INDEXER, {"uuid": job["uuid"], "token": token(runtime, job)})
    assert execution["status"] == "COMPLETE"
    assert (execution["result"]["seen"], execution["result"]["indexed"]) == (0, 0)
    assert counts(execution) == (0, 0, 0)
    assert runtime.jobs.get(job["uuid"])["state"] == "FINISHED"


def test_progress_is_recorded_on_the_execution(runtime: Runtime):
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, FILES)
    execution = run(runtime, INDEXER, seed_request(job, token(runtime, job)))
    assert counts(execution) == (4, 2, 4)
    assert execution["progress"]["phase"] == "done"
    assert execution["progress"]["files_vanished"] == 0
    assert execution["progress"]["attempt"] == 1
    assert any("Indexed 2 of 4 file(s)" in line for line in execution["logs"])


def test_progress_is_recorded_when_no_file_matches(runtime: Runtime):
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, FILES)
    message = {"uuid": job["uuid"], "filters": ["^nothing$"], "token": token(runtime, job)}
    execution = run(runtime, INDEXER, message)
    assert counts(execution) == (4, 0, 4)


def test_large_trees_are_written_in_batches(tmp_path: Path, monkeypatch):
    runtime = make_runtime(tmp_path, indexer={"batch_size": 2, "progress_interval": 0})
    reports: list[dict] = []
    progress = Executions.progress

    def recording(self, execution_id, values, *args, **kwargs):
        reports.append(dict(values))
        return progress(self, execution_id, values, *args, **kwargs)

    monkeypatch.setattr(Executions, "progress", recording)
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, {f"d{i % 2}/f{i}.txt": b"x" for i in range(5)})
    request = {"uuid": job["uuid"], "token": token(runtime, job)}
    execution = run(runtime, INDEXER, request)
    assert [r["files_indexed"] for r in reports] == [2, 4, 5]
    assert counts(execution) == (5, 5, 5)
    assert runtime.store.count("files") == 5

    # Marking vanished files pages through more than one batch too.
    for path in runtime.storage.resolve(ARCHIVE).rglob("*.txt"):
        path.unlink()
    again = run(runtime, INDEXER, request)
    assert again["result"]["vanished"] == 5
    assert runtime.store.count("files", {"present": False}) == 5


def test_a_redelivered_index_does_not_duplicate_history(runtime: Runtime):
    job = make_job(runtime, state="FINISHED")
    write_files(runtime, FILES)
    execution = run(runtime, INDEXER, {"uuid": job["uuid"], "token": token(runtime, job)})
    runtime.executions.requeue(execution["id"], "redelivered")
    again = runtime.deliver(INDEXER, execution["id"])
    bus(runtime).join()
    assert again is not None and again["status"] == "COMPLETE"
    assert again["result"]["indexed_execution"] == execution["result"]["indexed_execution"]
    after = runtime.jobs.record(job["uuid"])
    assert names(after).count("index") == 1 and names(after).count("indexed") == 1
    assert runtime.store.count("files") == len(FILES)
    assert len(executions_of(runtime, "jobs-manager")) == 1
