"""The launcher-proxy actor, end to end, with the inline launcher.

A launch (the seed's ``agave_pipelinejob``) goes in through ``Runtime.submit``; the
stub bus's ``join()`` then runs it, the RUNNING/FINISHED callbacks the launcher posts
to the jobs-manager, and — when indexing is configured — the indexer and its
``indexed`` message. Outcomes are read from the executions, the jobs, the file
records and the storage directory.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipelinejobs.adapters.bus.stub import StubBus
from pipelinejobs.adapters.store.memory import MemoryStore
from pipelinejobs.adapters.store.sqlite import SQLiteStore
from pipelinejobs.domain import archive_paths
from pipelinejobs.errors import SchemaValidationError, ValidationError
from pipelinejobs.runtime.dispatch import Runtime
from tests.support import FakeClock as Clock
from tests.support import runtime_config, stub

ALIAS = "launcher-proxy"
APP_ID = "tacobot9000-0.1.0u1"
SAMPLE = "sample.tacc.abcde"
JOB_UUID_RE = re.compile(r"^107[0-9a-f]{5}-[0-9a-f]{4}-5[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")
TOKEN_RE = re.compile(r"^[0-9a-f]{16}$")
SESSION_RE = r"[a-z]+-[a-z]+-\d{8}T\d{6}Z"

#: The seed's worked example, as it stands.
LAUNCH: dict[str, Any] = {
    "parameters": {"sample_id": SAMPLE},
    "job_definition": {
        "appId": APP_ID,
        "name": "TACObot job",
        "inputs": {"file1": "agave://data.tacc.cloud/examples/tacobot/test1.txt"},
        "parameters": {"salsa": True, "avocado": False, "cheese": True},
        "maxRunTime": "01:00:00",
    },
}


def pipeline_definition(app_id: str = APP_ID, name: str = "Tacobot") -> dict[str, Any]:
    return {
        "name": name,
        "components": [
            {"id": app_id, "inputs": {}, "parameters": {"CONTAINER_IMAGE": "sd2e/tacobot:0.1"}}
        ],
    }


# -- helpers -----------------------------------------------------------------------------


def run(rt: Runtime, alias: str, message: Any, params: dict[str, Any] | None = None) -> dict:
    execution = rt.submit(alias, message, params)
    stub(rt).join()
    return rt.executions.get(execution["id"])


def register(
    rt: Runtime, definition: dict[str, Any] | None = None, role: str = "user"
) -> tuple[str, str]:
    """Register a pipeline through the pipelines-manager; (uuid, token)."""
    execution = rt.submit("pipelines-manager", definition or pipeline_definition(), role=role)
    stub(rt).join()
    execution = rt.executions.get(execution["id"])
    assert execution["status"] == "COMPLETE", execution["error"]
    return execution["result"]["uuid"], execution["result"]["token"]


def launch(rt: Runtime, message: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run a launch to its end; the launch execution."""
    return run(rt, ALIAS, copy.deepcopy(message or LAUNCH))


def launched(rt: Runtime, message: dict[str, Any] | None = None) -> dict[str, Any]:
    execution = launch(rt, message)
    assert execution["status"] == "COMPLETE", execution["error"]
    return execution["result"]


def refused(rt: Runtime, message: dict[str, Any], *, error: str) -> dict[str, Any]:
    execution = launch(rt, message)
    assert execution["status"] == "ERROR", execution["result"]
    assert execution["error"]["error"] == error, execution["error"]
    return execution["error"]


def history(rt: Runtime, uuid: str) -> list[str]:
    return [entry["name"] for entry in rt.jobs.record(uuid)["history"]]


def segments(path: str) -> list[str]:
    """``/products/v2/a/b/c/d`` -> ``['a', 'b', 'c', 'd']``."""
    assert path.startswith(archive_paths.PREFIX + "/")
    return path[len(archive_paths.PREFIX) + 1 :].split("/")


def files(rt: Runtime) -> dict[str, dict[str, Any]]:
    """File records by path relative to their job's archive path."""
    return {f["relative_path"]: f for f in rt.store.find("files", {}, limit=1000).items}


@pytest.fixture(params=["memory", "sqlite"])
def clocked(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Runtime, Clock]]:
    clock = Clock()
    store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "c.sqlite3")
    bus = StubBus()
    rt = Runtime(runtime_config(tmp_path), store=store, bus=bus, clock=clock)  # type: ignore[arg-type]
    bus.deliver = rt.deliver
    yield rt, clock
    rt.close()


# -- the seed's worked example -------------------------------------------------------------


def test_seed_worked_example_creates_runs_finishes_and_indexes_a_job(runtime: Runtime):
    pipeline, _ = register(runtime)

    execution = launch(runtime)

    assert execution["status"] == "COMPLETE", execution["error"]
    result = execution["result"]
    uuid = result["uuid"]
    assert JOB_UUID_RE.match(uuid)
    assert result["created"] is True
    assert result["launched"] is True
    assert result["pipeline_uuid"] == pipeline
    assert TOKEN_RE.match(result["token"])
    assert result["token"] == runtime.tokens.update_token(uuid)
    assert not any(result["token"] in line for line in execution["logs"])
    assert any(f"Created job {uuid}" in line for line in execution["logs"])
    assert any(f"Launched job {uuid}" in line for line in execution["logs"])

    path = result["archive_path"]
    pipeline_hex, link_hash, data_hash, session = segments(path)
    assert pipeline_hex == pipeline.replace("-", "")
    assert re.fullmatch(r"[0-9a-f]{32}", link_hash)
    assert re.fullmatch(r"[0-9a-f]{32}", data_hash)
    assert re.fullmatch(SESSION_RE, session)
    assert link_hash == archive_paths.digest([SAMPLE], runtime.ids.domain)
    assert data_hash == archive_paths.digest(LAUNCH["job_definition"], runtime.ids.domain)
    assert (runtime.config.storage_root / path.lstrip("/")).is_dir()

    job = runtime.jobs.get(uuid)
    assert job["state"] == "FINISHED"
    # Indexed automatically when it finished, as the seed says it normally is.
    assert history(runtime, uuid) == ["create", "run", "run", "finish", "index", "indexed"]
    assert job["last_event"] == "indexed"
    assert job["index"] == {"patterns": [], "level": "1"}
    assert job["pipeline_uuid"] == pipeline
    assert job["generated_by"] == [pipeline]
    assert job["child_of"] == [SAMPLE]
    assert job["data"] == LAUNCH["job_definition"]
    assert job["archive_path"] == path
    assert job["archive_system"] == runtime.storage.system
    # Submitted without a request (no gateway): the configured public URL.
    assert job["agent"] == f"{runtime.config.public_url}/actors/v2/{runtime.actor_id(ALIAS)}"
    assert job["agent"].startswith("http://")
    assert job["task"] == f"{job['agent']}/executions/{execution['id']}"
    # The session names the instancing directory: eligible-awk -> eligible-awk-2018...Z.
    assert re.fullmatch(r"[a-z]+-[a-z]+", job["session"])
    assert session.startswith(job["session"] + "-")
    # Its input is on another storage system, not a catalog file: nothing to link.
    assert job["derived_from"] == job["acted_on"] == job["acted_using"] == []
    assert uuid == runtime.ids.job(pipeline, [SAMPLE], LAUNCH["job_definition"])
    assert runtime.store.count("files") == 0  # the inline launch wrote no outputs


def test_a_session_given_in_the_launch_is_written_and_names_the_directory(runtime: Runtime):
    register(runtime)

    result = launched(runtime, {**LAUNCH, "session": "casual-bass"})

    assert runtime.jobs.get(result["uuid"])["session"] == "casual-bass"
    assert re.fullmatch(r"casual-bass-\d{8}T\d{6}Z", segments(result["archive_path"])[-1])


def test_a_job_not_instanced_still_has_a_session(runtime: Runtime):
    register(runtime)

    result = launched(runtime, {**LAUNCH, "instanced": False})

    assert len(segments(result["archive_path"])) == 3
    assert re.fullmatch(r"[a-z]+-[a-z]+", runtime.jobs.get(result["uuid"])["session"])


@pytest.mark.parametrize("session", ["../up", "a/b", "abc", "-dash-first", "x" * 65, ""])
def test_a_session_that_cannot_name_a_directory_is_refused(runtime: Runtime, session: str):
    register(runtime)

    with pytest.raises(SchemaValidationError) as err:
        runtime.submit(ALIAS, {**copy.deepcopy(LAUNCH), "session": session})

    assert err.value.path == "session"
    assert runtime.store.count("jobs") == 0


def test_agent_and_task_start_with_the_url_the_launch_came_in_through(runtime: Runtime):
    register(runtime)
    execution = runtime.submit(
        ALIAS, copy.deepcopy(LAUNCH), base_url="https://pipelines.example.org"
    )
    stub(runtime).join()

    job = runtime.jobs.get(runtime.executions.get(execution["id"])["result"]["uuid"])

    agent = f"https://pipelines.example.org/actors/v2/{runtime.actor_id(ALIAS)}"
    assert job["agent"] == agent
    assert job["task"] == f"{agent}/executions/{execution['id']}"
    # What the launch sent on (its callbacks, the index request) carries it too.
    children = runtime.store.find("executions", {"actor": "jobs-manager"}, limit=10).items
    assert children and {c["base_url"] for c in children} == {"https://pipelines.example.org"}


def test_a_configured_public_url_wins_over_the_request(tmp_path: Path):
    from tests.support import make_runtime

    rt = make_runtime(tmp_path, "memory", gateway={"public_url": "https://api.tacc.cloud/"})
    try:
        register(rt)
        execution = rt.submit(ALIAS, copy.deepcopy(LAUNCH), base_url="http://10.0.0.7:8000")
        stub(rt).join()

        job = rt.jobs.get(rt.executions.get(execution["id"])["result"]["uuid"])
        assert job["agent"] == f"https://api.tacc.cloud/actors/v2/{rt.actor_id(ALIAS)}"
        assert job["task"] == f"{job['agent']}/executions/{execution['id']}"
    finally:
        rt.close()


def test_inputs_and_parameters_naming_catalog_files_are_linked(runtime: Runtime):
    """A's outputs and a reference are catalogued by indexing; B names them."""
    register(runtime)
    system = runtime.storage.system
    first = copy.deepcopy(LAUNCH)
    first["job_definition"]["outputs"] = {"sub/b.csv": "1,2\n", "a.txt": "text"}
    a = launched(runtime, first)
    reference = {**copy.deepcopy(LAUNCH), "data": {"kind": "reference"}}
    reference["archive_path"] = f"agave://{system}/reference/genomes"
    reference["job_definition"]["outputs"] = {"genome.fa": ">chr1"}
    launched(runtime, reference)
    catalog = files(runtime)
    b_csv, a_txt, genome = (catalog[n]["uuid"] for n in ("sub/b.csv", "a.txt", "genome.fa"))

    second = copy.deepcopy(LAUNCH)
    second["data"] = {"step": 2}
    second["job_definition"]["inputs"] = {
        "table": f"agave://{system}{a['archive_path']}/sub/b.csv",
        "genome": [f"agave://{system}/reference//genomes/genome.fa"],
        "elsewhere": "agave://data.tacc.cloud/examples/tacobot/test1.txt",
    }
    second["job_definition"]["parameters"] = {
        "notes": f"{a['archive_path']}/a.txt",  # a bare path: the default storage system
        "missing": f"agave://{system}{a['archive_path']}/not-indexed.txt",
        "flag": True,
    }
    b = runtime.jobs.get(launched(runtime, second)["uuid"])

    assert b["derived_from"] == [b_csv, genome]
    assert b["acted_on"] == [b_csv, a_txt]
    assert b["acted_using"] == [genome]


def test_callbacks_reach_the_jobs_manager_with_the_jobs_token(runtime: Runtime):
    register(runtime)
    execution = launch(runtime)
    result = execution["result"]

    callbacks = [runtime.executions.get(i) for i in result["launch"]["callbacks"]]

    assert [c["actor"] for c in callbacks] == ["jobs-manager", "jobs-manager"]
    assert [c["params"]["status"] for c in callbacks] == ["RUNNING", "FINISHED"]
    for callback in callbacks:
        assert callback["status"] == "COMPLETE", callback["error"]
        assert callback["parent"] == execution["id"]
        assert callback["sender"] == ALIAS
        assert callback["params"]["uuid"] == result["uuid"]
        assert callback["params"]["token"] == result["token"]
        assert callback["message"]["archivePath"] == result["archive_path"]


def test_the_returned_token_authorizes_events_on_the_job(runtime: Runtime):
    register(runtime)
    result = launched(runtime)

    event = {"uuid": result["uuid"], "name": "update", "token": result["token"]}
    execution = run(runtime, "jobs-manager", event)

    assert execution["status"] == "COMPLETE", execution["error"]
    assert history(runtime, result["uuid"])[-1] == "update"


def test_the_session_directory_is_stamped_with_the_runtime_clock(
    clocked: tuple[Runtime, Clock],
):
    rt, _ = clocked
    register(rt)

    result = launched(rt)

    session = segments(result["archive_path"])[-1]
    assert re.fullmatch(r"[a-z]+-[a-z]+-20260921T141320Z", session), session
    assert rt.jobs.get(result["uuid"])["created"] == "2026-09-21T14:13:20.000Z"


def test_the_actor_id_works_like_the_alias(runtime: Runtime):
    register(runtime)

    execution = run(runtime, runtime.actor_id(ALIAS), copy.deepcopy(LAUNCH))

    assert execution["actor"] == ALIAS
    assert execution["status"] == "COMPLETE", execution["error"]


# -- indexing --------------------------------------------------------------------------------

OUTPUTS = {
    "a.txt": "text",
    "sub/b.csv": "1,2\n",
    "reports/r.json": "{}",
    "c.csv.bak": "old",
}


@pytest.mark.parametrize(
    ("control", "level", "expected"),
    [
        pytest.param(
            {"index_patterns": [r"\.csv$", "^reports/"], "processing_level": "2"},
            "2",
            {"sub/b.csv", "reports/r.json"},
            id="patterns-and-level",
        ),
        pytest.param(
            {"index_patterns": ["%5Ereports%2F"]}, "1", {"reports/r.json"}, id="url-encoded"
        ),
        pytest.param({"processing_level": "3"}, "3", set(OUTPUTS), id="level-only"),
        pytest.param({"index_patterns": []}, "1", set(OUTPUTS), id="seed-empty-patterns"),
    ],
)
def test_indexing_after_finish_records_only_matching_files(
    runtime: Runtime, control: dict[str, Any], level: str, expected: set[str]
):
    register(runtime)
    message = copy.deepcopy(LAUNCH)
    message["job_definition"]["outputs"] = OUTPUTS
    message.update(control)

    result = launched(runtime, message)

    uuid = result["uuid"]
    job = runtime.jobs.get(uuid)
    assert job["state"] == "FINISHED"
    assert history(runtime, uuid) == ["create", "run", "run", "finish", "index", "indexed"]
    assert job["last_event"] == "indexed"
    # Every output was written, whatever is indexed.
    root = runtime.config.storage_root / result["archive_path"].lstrip("/")
    written = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert written == set(OUTPUTS)

    records = files(runtime)
    assert set(records) == expected
    for relative, record in records.items():
        assert record["level"] == level
        assert record["generated_by"] == [uuid]
        assert record["job_uuid"] == uuid
        assert record["child_of"] == [SAMPLE]
        assert record["path"] == f"{result['archive_path']}/{relative}"
        assert record["size"] == len(OUTPUTS[relative])
        assert record["uuid"] == runtime.ids.file(runtime.storage.system, record["path"])


def test_without_index_configuration_every_file_is_indexed_at_level_1(runtime: Runtime):
    register(runtime)
    message = copy.deepcopy(LAUNCH)
    message["job_definition"]["outputs"] = OUTPUTS

    result = launched(runtime, message)

    assert history(runtime, result["uuid"])[-3:] == ["finish", "index", "indexed"]
    records = files(runtime)
    assert set(records) == set(OUTPUTS)
    assert {r["level"] for r in records.values()} == {"1"}
    assert all("checksum" not in r for r in records.values())


def test_index_false_turns_automatic_indexing_off(runtime: Runtime):
    register(runtime)
    message = {**copy.deepcopy(LAUNCH), "index": False}
    message["job_definition"]["outputs"] = OUTPUTS

    result = launched(runtime, message)

    assert history(runtime, result["uuid"]) == ["create", "run", "run", "finish"]
    assert "index" not in runtime.jobs.get(result["uuid"])
    assert runtime.store.count("files") == 0
    # Indexing on request still works.
    index = {"uuid": result["uuid"], "name": "index", "token": result["token"]}
    assert run(runtime, "jobs-indexer", index)["status"] == "COMPLETE"
    assert set(files(runtime)) == set(OUTPUTS)


def test_index_fixity_refines_the_default_indexing(runtime: Runtime):
    register(runtime)
    message = {**copy.deepcopy(LAUNCH), "index_fixity": True}
    message["job_definition"]["outputs"] = {"a.txt": "text"}

    result = launched(runtime, message)

    assert runtime.jobs.get(result["uuid"])["index"] == {
        "patterns": [],
        "level": "1",
        "fixity": True,
    }
    (record,) = files(runtime).values()
    assert record["level"] == "1" and len(record["checksum"]) == 64


@pytest.mark.parametrize(
    ("refinement", "field"),
    [
        pytest.param({"index_patterns": []}, "index_patterns", id="patterns"),
        pytest.param({"processing_level": "2"}, "processing_level", id="level"),
        pytest.param({"index_fixity": True}, "index_fixity", id="fixity"),
    ],
)
def test_index_false_with_a_refinement_is_refused_at_submit(
    runtime: Runtime, refinement: dict[str, Any], field: str
):
    register(runtime)
    executions = runtime.store.count("executions")

    with pytest.raises(ValidationError) as err:
        runtime.submit(ALIAS, {**copy.deepcopy(LAUNCH), "index": False, **refinement})

    assert err.value.message == (
        f"index is false, so {field} has nothing to refine: automatic indexing is off "
        f"(send an index request to the jobs-indexer instead)"
    )
    assert err.value.detail["path"] == field
    assert runtime.store.count("executions") == executions


# -- archive path controls ------------------------------------------------------------------


def test_instanced_false_has_no_session_directory(runtime: Runtime):
    pipeline, _ = register(runtime)

    path = launched(runtime, {**LAUNCH, "instanced": False})["archive_path"]

    assert len(segments(path)) == 3
    assert path == archive_paths.archive_path(
        pipeline_uuid=pipeline,
        linkage=[SAMPLE],
        data=LAUNCH["job_definition"],
        domain=runtime.ids.domain,
        instanced=False,
    )


def test_an_explicit_archive_path_is_honoured(runtime: Runtime):
    register(runtime)
    message = {**copy.deepcopy(LAUNCH), "archive_path": "agave://data-sd2e-community/some/dir"}
    message["job_definition"]["outputs"] = {"out.txt": "hello"}

    result = launched(runtime, message)

    assert result["archive_path"] == "/some/dir"
    job = runtime.jobs.get(result["uuid"])
    assert job["archive_path"] == "/some/dir"
    assert job["state"] == "FINISHED"
    assert (runtime.config.storage_root / "some" / "dir" / "out.txt").read_text() == "hello"


def test_an_archive_path_on_another_storage_system_is_refused(runtime: Runtime):
    register(runtime)
    message = {**LAUNCH, "archive_path": "agave://data-tacc-cloud/some/dir"}

    error = refused(runtime, message, error="ValidationError")

    assert error["path"] == "archive_path"
    assert "data-tacc-cloud" in error["message"]
    assert runtime.store.count("jobs") == 0
    assert not (runtime.config.storage_root / "some").exists()


@pytest.mark.parametrize(
    "uri",
    [
        "agave://data-sd2e-community/../../etc",
        "agave://data-sd2e-community/products/../../outside",
        "agave://data-sd2e-community/a/\x00b",
        "agave://data-sd2e-community/",
    ],
)
def test_an_escaping_archive_path_is_refused_at_submit(runtime: Runtime, uri: str):
    register(runtime)
    executions = runtime.store.count("executions")

    with pytest.raises(ValidationError) as err:
        runtime.submit(ALIAS, {**LAUNCH, "archive_path": uri})

    assert err.value.detail["path"] == "archive_path"
    assert runtime.store.count("executions") == executions
    assert runtime.store.count("jobs") == 0


def test_an_archive_path_escaping_through_a_symlink_is_refused(runtime: Runtime, tmp_path: Path):
    register(runtime)
    outside = tmp_path / "outside"
    outside.mkdir()
    root = runtime.config.storage_root
    root.mkdir(parents=True, exist_ok=True)
    (root / "escape").symlink_to(outside, target_is_directory=True)
    message = {**copy.deepcopy(LAUNCH), "archive_path": "agave://data-sd2e-community/escape/x"}
    message["job_definition"]["outputs"] = {"pwned.txt": "x"}

    # Refused when the message is submitted (a 400 at the gateway): nothing is stored.
    executions = runtime.store.count("executions")
    with pytest.raises(ValidationError) as info:
        runtime.submit("launcher-proxy", message)

    assert info.value.detail["path"] == "archive_path"
    assert "outside the storage root" in info.value.message
    assert runtime.store.count("jobs") == 0
    assert runtime.store.count("executions") == executions
    assert list(outside.iterdir()) == []


# -- which pipeline ----------------------------------------------------------------------------


def test_pipeline_uuid_names_the_pipeline_directly(runtime: Runtime):
    register(runtime)
    other, _ = register(runtime, pipeline_definition("other-app-1.0", "Other"))
    message = copy.deepcopy(LAUNCH)
    message["pipeline_uuid"] = other

    result = launched(runtime, message)

    assert result["pipeline_uuid"] == other
    assert runtime.jobs.get(result["uuid"])["pipeline_uuid"] == other
    assert segments(result["archive_path"])[0] == other.replace("-", "")


def test_pipeline_uuid_needs_no_matching_app_id(runtime: Runtime):
    pipeline, _ = register(runtime)
    message = copy.deepcopy(LAUNCH)
    message["job_definition"]["appId"] = "not-a-component-0.1"
    message["pipeline_uuid"] = pipeline

    assert launched(runtime, message)["pipeline_uuid"] == pipeline


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        pytest.param({"appId": "unknown-app-0.0.1"}, "unknown-app-0.0.1", id="unknown-app"),
        pytest.param({"appId": None}, "appId", id="no-app-id"),
    ],
)
def test_an_unknown_pipeline_is_not_found(runtime: Runtime, change: dict, detail: str):
    register(runtime)
    message = copy.deepcopy(LAUNCH)
    message["job_definition"].update(change)
    if change["appId"] is None:
        del message["job_definition"]["appId"]

    error = refused(runtime, message, error="NotFound")

    assert detail in error["message"]
    assert runtime.store.count("jobs") == 0


def test_an_unregistered_pipeline_uuid_is_not_found(runtime: Runtime):
    register(runtime)
    unknown = runtime.ids.pipeline([{"repo": "nobody/nothing:0"}])

    error = refused(runtime, {**LAUNCH, "pipeline_uuid": unknown}, error="NotFound")

    assert unknown in error["message"]
    assert runtime.store.count("jobs") == 0


def test_an_app_id_shared_by_two_pipelines_must_be_disambiguated(runtime: Runtime):
    """Registration refuses a second pipeline for an app id (test_pipelines_manager);
    pipelines stored before that rule may still share one."""
    first, _ = register(runtime)
    shared = pipeline_definition()
    shared["components"].append({"uri": "https://example.org/extra"})
    doc = runtime.pipelines.get(first)
    second = runtime.pipelines.uuid_for(shared)
    legacy = {**doc, "uuid": second, "components": shared["components"], "version": 0}
    runtime.store.insert("pipelines", {k: v for k, v in legacy.items() if k != "task"})

    error = refused(runtime, LAUNCH, error="Conflict")
    assert "pipeline_uuid" in error["message"]
    assert runtime.store.count("jobs") == 0

    assert launched(runtime, {**LAUNCH, "pipeline_uuid": second})["pipeline_uuid"] == second


def test_an_app_id_released_by_a_retired_pipeline_launches_the_new_one(runtime: Runtime):
    old, token = register(runtime)
    run(runtime, "pipelines-manager", {"uuid": old, "action": "retire", "token": token})
    fixed = pipeline_definition()
    fixed["components"][0]["parameters"] = {"CONTAINER_IMAGE": "sd2e/tacobot:0.2"}
    new, _ = register(runtime, fixed)

    assert launched(runtime)["pipeline_uuid"] == new


@pytest.mark.parametrize(("action", "status"), [("disable", "disabled"), ("retire", "retired")])
def test_a_disabled_or_retired_pipeline_accepts_no_jobs(runtime: Runtime, action: str, status: str):
    pipeline, token = register(runtime)
    done = run(runtime, "pipelines-manager", {"uuid": pipeline, "action": action, "token": token})
    assert done["status"] == "COMPLETE", done["error"]

    error = refused(runtime, LAUNCH, error="Conflict")

    assert error["state"] == status
    assert status in error["message"]
    assert runtime.store.count("jobs") == 0
    assert not runtime.config.storage_root.joinpath("products").exists()


def test_an_enabled_again_pipeline_accepts_jobs(runtime: Runtime):
    pipeline, token = register(runtime)
    for action in ("disable", "enable"):
        run(runtime, "pipelines-manager", {"uuid": pipeline, "action": action, "token": token})

    assert launched(runtime)["launched"] is True


# -- the same job twice ------------------------------------------------------------------------


def _same_job_again(runtime: Runtime, first_message: dict, again_message: dict, queued: bool):
    if queued:  # both waiting before either runs
        first_id = runtime.submit(ALIAS, copy.deepcopy(first_message))["id"]
        again_id = runtime.submit(ALIAS, copy.deepcopy(again_message))["id"]
        stub(runtime).join()
        return runtime.executions.get(first_id), runtime.executions.get(again_id)
    return launch(runtime, first_message), launch(runtime, again_message)


@pytest.mark.parametrize("queued", [False, True], ids=["one-after-the-other", "both-queued"])
@pytest.mark.parametrize(
    "again",
    [
        pytest.param(lambda m: m, id="identical"),
        pytest.param(lambda m: {**m, "instanced": False}, id="other-control-parameter"),
        pytest.param(
            lambda m: {**m, "parameters": {"sample_id": [SAMPLE, SAMPLE]}}, id="same-ids-as-array"
        ),
    ],
)
def test_the_same_launch_twice_is_one_job(runtime: Runtime, queued: bool, again: Any):
    register(runtime)

    first, second = _same_job_again(runtime, LAUNCH, again(copy.deepcopy(LAUNCH)), queued)

    assert first["status"] == "COMPLETE", first["error"]
    assert second["status"] == "COMPLETE", second["error"]
    uuid = first["result"]["uuid"]
    assert second["result"]["uuid"] == uuid
    assert second["result"]["created"] is False
    assert second["result"]["launched"] is False
    assert "token" not in second["result"]
    assert first["result"]["token"] not in repr(second["result"])
    assert second["result"]["archive_path"] == first["result"]["archive_path"]
    assert any("not launched again" in line for line in second["logs"])
    assert runtime.store.count("jobs") == 1
    assert history(runtime, uuid) == ["create", "run", "run", "finish", "index", "indexed"]
    assert runtime.jobs.get(uuid)["task"].endswith(first["id"])


def test_different_data_is_a_different_job(runtime: Runtime):
    register(runtime)

    first = launched(runtime, {**LAUNCH, "data": {"run": 1}})
    second = launched(runtime, {**LAUNCH, "data": {"run": 2}})

    assert first["uuid"] != second["uuid"]
    assert runtime.store.count("jobs") == 2
    assert segments(first["archive_path"])[2] == archive_paths.digest({"run": 1}, "sd2e.org")
    assert runtime.jobs.get(second["uuid"])["data"] == {"run": 2}


# -- linkage -----------------------------------------------------------------------------------

M1, M2 = "measurement.tacc.1234", "measurement.tacc.2345"
S1, S2 = "sample.tacc.abcde", "sample.tacc.bcdef"
E1 = "experiment.tacc.10001"
SAMPLE_UUID = "1034aaf1-459c-5e42-820d-b822aa4b3990"


@pytest.mark.parametrize(
    ("parameters", "child_of", "path_ids"),
    [
        pytest.param({"sample_id": S1}, [S1], [S1], id="sample"),
        pytest.param({"measurement_id": M1}, [M1], [M1], id="measurement"),
        pytest.param({"measurement_id": M1, "sample_id": S1}, [M1], [S1], id="measurement+sample"),
        pytest.param(
            {"measurement_id": [M2, M1], "sample_id": S1}, [M1, M2], [S1], id="measurements+sample"
        ),
        pytest.param({"measurement_id": [M2, M1]}, [M1, M2], [M1, M2], id="measurement-array"),
        pytest.param({"experiment_id": E1}, [E1], [E1], id="experiment"),
        pytest.param(
            {"experiment_id": E1, "sample_id": [S2, S1]}, [S1, S2], [E1], id="exp+samples"
        ),
        pytest.param({"sample_id": SAMPLE_UUID}, [SAMPLE_UUID], [SAMPLE_UUID], id="sample-uuid"),
    ],
)
def test_linkage_rules(
    runtime: Runtime, parameters: dict[str, Any], child_of: list[str], path_ids: list[str]
):
    pipeline, _ = register(runtime)

    result = launched(runtime, {**LAUNCH, "parameters": parameters})

    job = runtime.jobs.get(result["uuid"])
    assert job["child_of"] == child_of
    assert segments(result["archive_path"])[1] == archive_paths.digest(path_ids, runtime.ids.domain)
    assert result["uuid"] == runtime.ids.job(pipeline, child_of, LAUNCH["job_definition"])


def test_measurements_with_a_sample_share_the_samples_archive_directory(runtime: Runtime):
    register(runtime)

    by_sample = launched(runtime, {**LAUNCH, "parameters": {"sample_id": S1}})
    by_measurement = launched(
        runtime, {**LAUNCH, "parameters": {"measurement_id": [M1, M2], "sample_id": S1}}
    )

    assert by_sample["uuid"] != by_measurement["uuid"]
    assert segments(by_sample["archive_path"])[:3] == segments(by_measurement["archive_path"])[:3]


def test_array_order_does_not_change_the_job(runtime: Runtime):
    register(runtime)

    first = launched(runtime, {**LAUNCH, "parameters": {"measurement_id": [M1, M2]}})
    again = launched(runtime, {**LAUNCH, "parameters": {"measurement_id": [M2, M1]}})

    assert again["uuid"] == first["uuid"]
    assert again["launched"] is False
    assert runtime.store.count("jobs") == 1


# -- failures ----------------------------------------------------------------------------------


def test_a_failing_compute_ends_the_job_failed(runtime: Runtime):
    register(runtime)
    message = copy.deepcopy(LAUNCH)
    message["job_definition"]["fail"] = "boom"

    result = launched(runtime, message)

    job = runtime.jobs.record(result["uuid"])
    assert job["state"] == "FAILED"
    assert history(runtime, result["uuid"]) == ["create", "run", "run", "fail"]
    assert job["history"][-1]["data"]["error"] == "boom"
    assert job["history"][-1]["data"]["status"] == "FAILED"


def test_a_refused_launch_fails_the_job_with_the_reason(runtime: Runtime):
    register(runtime)
    message = copy.deepcopy(LAUNCH)
    message["job_definition"]["outputs"] = {"a.txt": 1}

    error = refused(runtime, message, error="ValidationError")

    assert error["path"] == "job_definition/outputs"
    (job,) = runtime.store.find("jobs", {}, limit=2).items
    assert job["state"] == "FAILED"
    job = runtime.jobs.record(job["uuid"])
    assert [h["name"] for h in job["history"]] == ["create", "run", "fail"]
    assert "outputs" in job["history"][-1]["data"]["reason"]


# -- redelivery --------------------------------------------------------------------------------


def test_a_redelivered_launch_makes_no_second_run_nor_job(runtime: Runtime):
    register(runtime)
    execution = runtime.submit(ALIAS, copy.deepcopy(LAUNCH))
    stub(runtime).join()
    first = runtime.executions.get(execution["id"])
    job_before = runtime.jobs.record(first["result"]["uuid"])
    executions = runtime.store.count("executions")

    runtime.executions.requeue(execution["id"], "worker lost")
    stub(runtime).publish(ALIAS, execution["id"])
    stub(runtime).join()

    again = runtime.executions.get(execution["id"])
    assert again["status"] == "COMPLETE", again["error"]
    assert again["attempts"] == 2
    assert again["result"]["uuid"] == first["result"]["uuid"]
    assert runtime.store.count("jobs") == 1
    job = runtime.jobs.record(first["result"]["uuid"])
    assert [h["name"] for h in job["history"]] == [
        "create",
        "run",
        "run",
        "finish",
        "index",
        "indexed",
    ]
    assert job["history"] == job_before["history"]
    assert job["state"] == "FINISHED"
    # The callbacks it sends again have the same ids: found, not sent a second time.
    assert runtime.store.count("executions") == executions
    assert again["result"]["launch"]["callbacks"] == first["result"]["launch"]["callbacks"]


def test_a_redelivered_launch_of_a_finished_execution_is_ignored(runtime: Runtime):
    register(runtime)
    execution = runtime.submit(ALIAS, copy.deepcopy(LAUNCH))
    stub(runtime).join()
    first = runtime.executions.get(execution["id"])

    stub(runtime).publish(ALIAS, execution["id"])
    stub(runtime).join()

    assert runtime.executions.get(execution["id"]) == first
    assert history(runtime, first["result"]["uuid"]) == [
        "create",
        "run",
        "run",
        "finish",
        "index",
        "indexed",
    ]


# -- malformed launches are refused before anything is stored ------------------------------------

A_JOB = "1074aaf1-459c-5e42-820d-b822aa4b3990"


@pytest.mark.parametrize(
    ("message", "path"),
    [
        pytest.param({"job_definition": LAUNCH["job_definition"]}, "", id="no-parameters"),
        pytest.param({"parameters": {"sample_id": SAMPLE}}, "", id="no-job-definition"),
        pytest.param({**LAUNCH, "parameters": {}}, "parameters", id="no-linkage"),
        pytest.param(
            {**LAUNCH, "parameters": {"sample_id": "tacc"}}, "parameters/sample_id", id="bad-sample"
        ),
        pytest.param(
            {**LAUNCH, "parameters": {"sample_id": []}}, "parameters/sample_id", id="empty-array"
        ),
        pytest.param({**LAUNCH, "pipeline": "x"}, "", id="unknown-field"),
        pytest.param({**LAUNCH, "pipeline_uuid": A_JOB}, "pipeline_uuid", id="job-uuid"),
        pytest.param({**LAUNCH, "instanced": "no"}, "instanced", id="instanced-text"),
        pytest.param({**LAUNCH, "processing_level": "9"}, "processing_level", id="level"),
        pytest.param({**LAUNCH, "index_patterns": "x"}, "index_patterns", id="patterns-text"),
        pytest.param({**LAUNCH, "archive_path": "s3://bucket/x"}, "archive_path", id="s3"),
        pytest.param({**LAUNCH, "job_definition": "run it"}, "job_definition", id="definition"),
    ],
)
def test_malformed_launches_are_refused_at_submit(
    runtime: Runtime, message: dict[str, Any], path: str
):
    register(runtime)
    executions = runtime.store.count("executions")

    with pytest.raises(SchemaValidationError) as err:
        runtime.submit(ALIAS, copy.deepcopy(message))

    assert err.value.path == path
    assert runtime.store.count("executions") == executions
    assert runtime.store.count("jobs") == 0


def test_a_redelivered_local_launch_starts_one_compute_and_keeps_one_nonce(tmp_path: Path):
    import sys

    from pipelinejobs.access.nonces import Nonces
    from pipelinejobs.adapters.launchers.watched import WatchedLauncher
    from tests.adapters.launchers.callbacks import Capture
    from tests.support import make_runtime

    capture = Capture()  # where the supervisor's status callbacks go
    # The tests run as root: a config that runs local jobs says root may run them.
    launcher = {"public_url": capture.url, "run_as": "root"}
    rt = make_runtime(tmp_path, "sqlite", launcher=launcher)
    try:
        command = [sys.executable, "-c", "open('runs', 'a').write('ran\\n')"]
        runs = {"name": "Runs", "components": [{"id": APP_ID, "command": command}]}
        register(rt, runs, role="admin")
        message = copy.deepcopy(LAUNCH)
        message["job_definition"] = {"appId": APP_ID, "launcher": "local"}
        execution = rt.submit(ALIAS, message)
        stub(rt).join()
        first = rt.executions.get(execution["id"])
        assert first["status"] == "COMPLETE", first["error"]
        # The worker died before recording the end: the broker delivers it again.
        died = {"status": "RUNNING"}
        rt.store.update("executions", first["id"], version=first["version"], set=died)
        rt.deliver(ALIAS, first["id"])
        for thread in list(WatchedLauncher.watchers):
            thread.join(30)

        again = rt.executions.get(first["id"])
        assert again["status"] == "COMPLETE" and again["attempts"] == 2
        assert again["result"]["launch"]["already_started"] is True
        assert again["result"]["launch"]["pid"] == first["result"]["launch"]["pid"]
        archive_dir = rt.storage.resolve(first["result"]["archive_path"])
        assert (archive_dir / "runs").read_text() == "ran\n"  # one compute
        assert len(Nonces(rt.store).list("jobs-manager")) == 1  # the unused one is gone
        assert capture.statuses() == ["RUNNING", "FINISHED"]
    finally:
        capture.close()
        rt.close()


# -- a run's priority (issue 15) ---------------------------------------------------------


def run_of_priority(rt: Runtime, priority: str) -> str:
    """A run of the registered pipeline with ``priority``; its uuid."""
    pipeline = rt.pipelines.resolve(uuid=None, app_id=APP_ID)["uuid"]
    message = {"action": "create_run", "pipeline_uuid": pipeline, "name": f"batch {priority}",
               "priority": priority}  # fmt: skip
    made = run(rt, ALIAS, message)
    assert made["status"] == "COMPLETE", made["error"]
    uuid: str = made["result"]["uuid"]
    return uuid


def job_executions(rt: Runtime, uuid: str) -> list[dict[str, Any]]:
    """The executions about job ``uuid`` (its events), in the order they were made."""
    found = rt.store.find("executions", {"job": uuid}, order="created", limit=1000).items
    return [e for e in found if e.get("job") == uuid]


def test_a_job_launched_in_a_run_takes_the_runs_priority(runtime: Runtime):
    register(runtime)
    in_run = run_of_priority(runtime, "high")
    execution = launch(runtime, {**LAUNCH, "run": in_run})
    assert execution["status"] == "COMPLETE", execution["error"]
    uuid = execution["result"]["uuid"]
    job = runtime.jobs.get(uuid)
    assert (job["run"], job["priority"]) == (in_run, "high")
    events = job_executions(runtime, uuid)
    assert events and events[0]["actor"] == "jobs-manager"  # its first: the RUNNING callback
    published = stub(runtime).priorities
    # The launch itself, then every event of its job: published and stored as high.
    for e in [execution, *events]:
        assert (e["priority"], published[e["id"]]) == ("high", "high"), e["actor"]


def test_a_launchs_own_priority_wins_over_its_runs(runtime: Runtime):
    register(runtime)
    in_run = run_of_priority(runtime, "high")
    execution = launch(runtime, {**LAUNCH, "run": in_run, "priority": "low"})
    uuid = execution["result"]["uuid"]
    assert runtime.jobs.get(uuid)["priority"] == "low"
    published = stub(runtime).priorities
    assert {published[e["id"]] for e in [execution, *job_executions(runtime, uuid)]} == {"low"}


def test_a_job_created_in_a_run_takes_the_runs_priority(runtime: Runtime):
    register(runtime)
    in_run = run_of_priority(runtime, "low")
    pipeline = runtime.pipelines.resolve(uuid=None, app_id=APP_ID)["uuid"]
    create = {"action": "create", "pipeline_uuid": pipeline, "run": in_run,
              "parameters": {"sample_id": SAMPLE}}  # fmt: skip
    made = run(runtime, ALIAS, create)
    assert made["status"] == "COMPLETE", made["error"]
    uuid, token = made["result"]["uuid"], made["result"]["token"]
    assert runtime.jobs.get(uuid)["priority"] == "low"
    event = run(runtime, "jobs-manager", {"uuid": uuid, "name": "run", "token": token})
    assert event["status"] == "COMPLETE", event["error"]
    assert (event["priority"], stub(runtime).priorities[event["id"]]) == ("low", "low")
