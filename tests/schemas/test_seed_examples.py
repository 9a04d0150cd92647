"""The seed document's example messages, accepted or refused exactly as its schemas say.

Examples are copied from ``shared/seeds/004_8da468b48381380e.txt``. Where the seed's own
examples contradict its ``agave_pipelinejob`` schema, the schema was generalised (see the
``$comment`` in ``schemas/agave_pipelinejob.json``) and the examples are accepted.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from pipelinejobs.domain import validation
from pipelinejobs.errors import SchemaValidationError


def refusal(name: str, instance: Any) -> SchemaValidationError:
    """The error ``validate`` raises; fails the test if the instance is accepted."""
    with pytest.raises(SchemaValidationError) as err:
        validation.validate(name, instance)
    assert not validation.is_valid(name, instance)
    return err.value


def accepted(name: str, instance: Any) -> None:
    validation.validate(name, instance)
    assert validation.is_valid(name, instance)


# -- Pipelines Manager ----------------------------------------------------------------

TACOBOT = {
    "name": "Tacobot 9001",
    "description": "Creates even better breakfast tacos out of silicon, ozone, and shredded GPUs",
    "components": [
        {"id": "e1LqaqMyqq4xB", "opts": {"cheese": True, "salsa": True, "eggs": False}},
        {"id": "bbq-brisket-0.5.0", "parameters": {"smoke": True, "quantity": 4}},
    ],
    "processing_levels": ["1"],
    "accepts": ["CSV"],
    "produces": ["PNG"],
}


def test_seed_tacobot_pipeline_is_refused_at_components_0():
    err = refusal("pipeline_manager_create", TACOBOT)
    assert err.schema == "PipelinesDefinition"
    assert err.path == "components/0"
    assert str(err).startswith("PipelinesDefinition: components/0: ")
    for form in ("agave_app", "abaco_actor", "service", "container"):
        assert form in str(err)


def test_fixed_tacobot_pipeline_is_accepted():
    fixed = copy.deepcopy(TACOBOT)
    fixed["components"] = [
        {
            "id": "tacobot9000-0.1.0u1",
            "inputs": {},
            "parameters": {"CONTAINER_IMAGE": "sd2e/tacobot:0.1.0", "cheese": True},
        },
        {"repo": "sd2e/bbq-brisket:0.5.0", "options": {"smoke": True, "quantity": 4}},
    ]
    accepted("pipeline_manager_create", fixed)


@pytest.mark.parametrize(
    "component",
    [
        {"id": "G1p783PxpalBB", "repo": "sd2e/reactor:latest"},
        {"uri": "https://api.tacc.cloud/", "identifier": "tenant"},
        {"repo": "sd2e/container:1", "hash": "abc"},
    ],
)
def test_each_component_form_is_accepted(component: dict[str, Any]):
    accepted("pipeline_manager_create", {"name": "p", "components": [component]})


def test_pipeline_create_refuses_extra_property_and_bad_level():
    pipeline = {"name": "p", "components": [{"repo": "sd2e/x:1"}]}
    assert refusal("pipeline_manager_create", {**pipeline, "owner": "me"}).path == ""
    err = refusal("pipeline_manager_create", {**pipeline, "processing_levels": ["4"]})
    assert err.path == "processing_levels/0"
    assert refusal("pipeline_manager_create", {"name": "p"}).path == ""


def test_pipeline_update_message():
    update = {
        "uuid": "1064aaf1-459c-5e42-820d-b822aa4b3990",
        "action": "update",
        "body": {"name": "Tacobot 9002"},
        "token": "0df45d5e9e0f31e2",
    }
    accepted("pipeline_manager_update", update)
    assert refusal("pipeline_manager_update", {**update, "token": "0df45d5e9e0f31e"}).path == (
        "token"
    )
    assert refusal("pipeline_manager_update", {**update, "action": "delete"}).path == "action"
    without_token = {k: v for k, v in update.items() if k != "token"}
    assert "'token'" in str(refusal("pipeline_manager_update", without_token))


# -- PipelineJobs Manager ----------------------------------------------------------------

FINISH_EVENT = {
    "uuid": "1073f4ff-c2b9-5190-bd9a-e6a406d9796a",
    "name": "finish",
    "token": "0dc73dc3ff39b49a",
}


def test_seed_finish_event_is_accepted():
    accepted("pipelinejob_manager_event", FINISH_EVENT)
    accepted("pipelinejob_manager_event", {**FINISH_EVENT, "data": {"arbitrary": "key value"}})


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"uuid": "1064aaf1-459c-5e42-820d-b822aa4b3990"}, "uuid"),
        ({"name": "explode"}, "name"),
        ({"token": "0dc73dc3ff39b49"}, "token"),
        ({"data": "not an object"}, "data"),
    ],
)
def test_bad_manager_events_are_refused_at_their_field(change: dict[str, Any], path: str):
    err = refusal("pipelinejob_manager_event", {**FINISH_EVENT, **change})
    assert err.schema == "PipelineJobManagerEvent"
    assert err.path == path
    assert f": {path}: " in str(err)


def test_manager_event_refuses_extra_property_and_missing_name():
    err = refusal("pipelinejob_manager_event", {**FINISH_EVENT, "status": "FINISHED"})
    assert err.path == ""
    assert "'status'" in str(err)
    err = refusal("pipelinejob_manager_event", {"uuid": FINISH_EVENT["uuid"]})
    assert "'name'" in str(err)


# -- PipelineJobs Indexer ----------------------------------------------------------------

INDEX_REQUEST = {
    "uuid": "1079f67e-0ef6-52fe-b4e9-d77875573860",
    "name": "index",
    "filters": ["sample%5C.uw_biofab%5C.141715", "sample-uw_biofab-141715"],
    "level": "2",
    "token": "0dc73dc3ff39b49a",
}

INDEXED = {
    "uuid": "1079f67e-0ef6-52fe-b4e9-d77875573860",
    "name": "indexed",
    "token": "0dc73dc3ff39b49a",
}


def test_seed_index_request_is_accepted():
    accepted("pipelinejob_index", INDEX_REQUEST)


def test_seed_indexed_message_is_accepted():
    accepted("pipelinejob_indexed", INDEXED)


def test_index_messages_refuse_wrong_names_levels_and_extras():
    assert refusal("pipelinejob_index", {**INDEX_REQUEST, "level": "4"}).path == "level"
    assert refusal("pipelinejob_index", {**INDEX_REQUEST, "name": "indexed"}).path == "name"
    assert refusal("pipelinejob_index", {**INDEX_REQUEST, "filters": "x"}).path == "filters"
    assert refusal("pipelinejob_index", {**INDEX_REQUEST, "extra": 1}).path == ""
    assert refusal("pipelinejob_indexed", {**INDEXED, "name": "index"}).path == "name"
    assert refusal("pipelinejob_indexed", {**INDEXED, "level": "2"}).path == ""


# -- PipelineJobs Agave Proxy ---------------------------------------------------------------

JOB_DEFINITION = {
    "appId": "tacobot9000-0.1.0u1",
    "name": "TACObot job",
    "inputs": {"file1": "agave://data.tacc.cloud/examples/tacobot/test1.txt"},
    "parameters": {"salsa": True, "avocado": False, "cheese": True},
    "maxRunTime": "01:00:00",
}

WORKED_EXAMPLE = {
    "parameters": {"sample_id": "sample.tacc.abcde"},
    "job_definition": JOB_DEFINITION,
}


def test_bare_job_definition_is_refused_for_missing_parameters():
    err = refusal("agave_pipelinejob", {"job_definition": JOB_DEFINITION})
    assert err.schema == "AgavePipelineJob"
    assert err.path == "" or "'parameters'" in str(err)
    assert "'parameters' is a required property" in str(err)


def test_seed_worked_example_is_accepted():
    accepted("agave_pipelinejob", WORKED_EXAMPLE)


def test_control_parameters_are_accepted():
    accepted(
        "agave_pipelinejob",
        {
            **WORKED_EXAMPLE,
            "instanced": False,
            "index_patterns": [],
            "processing_level": "2",
            "data": {"key1": "value 1"},
            "archive_path": "agave://data-sd2e-community/products/v2/tacobot",
        },
    )


@pytest.mark.parametrize(
    "parameters",
    [
        {"measurement_id": ["measurement.tacc.1234", "measurement.tacc.2345"]},
        {"measurement_id": "measurement.tacc.1234"},
        {"sample_id": "sample.uw_biofab.141715"},
        {"sample_id": ["sample.tacc.abcde", "sample.ginkgo.20001"]},
        {"sample_id": "1033f4ff-c2b9-5190-bd9a-e6a406d9796a"},
        {"sample_id": ["1033f4ff-c2b9-5190-bd9a-e6a406d9796a", "sample.tacc.abcde"]},
        {"experiment_id": "experiment.transcriptic.r1bsmggea748b"},
        {"experiment_id": "1023f4ff-c2b9-5190-bd9a-e6a406d9796a"},
        {"measurement_id": "1043f4ff-c2b9-5190-bd9a-e6a406d9796a"},
        {"experiment_design_id": "NovelChassis-NAND-Gate"},
        {"experiment_design_id": ["NovelChassis-NAND-Gate", "YeastGates"]},
        {"measurement_id": "measurement.tacc.1234", "sample_id": "sample.tacc.abcde"},
    ],
)
def test_linkage_forms_are_accepted(parameters: dict[str, Any]):
    accepted("agave_pipelinejob", {"parameters": parameters, "job_definition": JOB_DEFINITION})


@pytest.mark.parametrize(
    ("parameters", "path"),
    [
        ({"measurement_id": []}, "parameters/measurement_id"),
        ({"sample_id": []}, "parameters/sample_id"),
        ({"experiment_design_id": []}, "parameters/experiment_design_id"),
        ({"experiment_design_id": ""}, "parameters/experiment_design_id"),
        ({"sample_id": "1043f4ff-c2b9-5190-bd9a-e6a406d9796a"}, "parameters/sample_id"),
        ({"measurement_id": "1033f4ff-c2b9-5190-bd9a-e6a406d9796a"}, "parameters/measurement_id"),
        ({"sample_id": "measurement.tacc.1234"}, "parameters/sample_id"),
        ({"sample_id": "sample.tacc"}, "parameters/sample_id"),
        ({"sample_id": "sample tacc abcde"}, "parameters/sample_id"),
        ({"experiment_id": "sample.tacc.abcde"}, "parameters/experiment_id"),
        ({"sample_id": ["sample.tacc.abcde", 7]}, "parameters/sample_id"),
        ({"sample_id": {"id": "sample.tacc.abcde"}}, "parameters/sample_id"),
        ({}, "parameters"),
        ({"data": {"key1": "value 1"}}, "parameters"),
    ],
)
def test_bad_linkage_is_refused(parameters: dict[str, Any], path: str):
    err = refusal("agave_pipelinejob", {"parameters": parameters, "job_definition": JOB_DEFINITION})
    assert err.path == path


def test_agave_pipelinejob_refuses_extras_and_bad_controls():
    assert refusal("agave_pipelinejob", {**WORKED_EXAMPLE, "extra": 1}).path == ""
    assert refusal("agave_pipelinejob", {**WORKED_EXAMPLE, "processing_level": "4"}).path == (
        "processing_level"
    )
    assert refusal("agave_pipelinejob", {**WORKED_EXAMPLE, "instanced": "no"}).path == "instanced"
    err = refusal("agave_pipelinejob", {**WORKED_EXAMPLE, "archive_path": "/products/v2"})
    assert err.path == "archive_path"
    err = refusal("agave_pipelinejob", {**WORKED_EXAMPLE, "job_definition": "tacobot"})
    assert err.path == "job_definition"


# -- Job Life Cycle: the seed's full job record -------------------------------------------

ARCHIVE_PATH = (
    "/products/v2/103f877a7ab857d182807b75af4eab6e/106bd127e2d257acb9be11ed06042e68/"
    "eligible-awk-20181127T173243Z"
)

SEED_JOB_RECORD: dict[str, Any] = {
    "agent": "https://api.tacc.cloud/actors/v2/G46vjoAVzGkkz",
    "archive_path": ARCHIVE_PATH,
    "archive_system": "data-sd2e-community",
    "data": {
        "appId": "urrutia-novel_chassis_app-0.1.0",
        "archivePath": "",
        "inputs": {"file1": "agave://data.tacc.cloud/examples/tacobot/test1.txt"},
        "maxRunTime": "01:00:00",
        "name": "TACObot job",
        "parameters": {"avocado": False, "cheese": True, "salsa": True},
    },
    "derived_from": ["1022efa3-4480-538f-a581-f1810fb4e0c3"],
    "generated_by": ["106bd127-e2d2-57ac-b9be-11ed06042e68"],
    "history": [
        {
            "data": {
                "appId": "tacobot9000-0.1.0u1",
                "inputs": {"file1": "agave://data.tacc.cloud/examples/tacobot/test1.txt"},
                "maxRunTime": "01:00:00",
                "name": "TACObot job",
                "parameters": {"avocado": False, "cheese": True, "salsa": True},
            },
            "date": "2018-12-08T00:08:32.000+0000",
            "name": "create",
        },
        {
            "data": {
                "appId": "tacobot9000-0.1.0u1",
                "archive": True,
                "archivePath": ARCHIVE_PATH,
                "archiveSystem": "data-tacc-cloud",
                "batchQueue": "normal",
                "created": "2018-12-07T18:08:37.000-06:00",
                "endTime": None,
                "executionSystem": "hpc-tacc-stampede2",
                "id": "7381691026605150696-242ac11b-0001-007",
                "inputs": {"file1": "agave://data.tacc.cloud/examples/tacobot/test1.txt"},
                "lastUpdated": "2018-12-07T18:09:40.000-06:00",
                "maxRunTime": "01:00:00",
                "memoryPerNode": 1,
                "name": "TACObot job",
                "nodeCount": 1,
                "outputPath": "tacobot/job-7381691026605150696-242ac11b-0001-007-TACObot-job",
                "owner": "tacobot",
                "parameters": {"avocado": False, "cheese": True, "salsa": True},
                "processorsPerNode": 1,
                "startTime": None,
                "status": "RUNNING",
                "submitTime": "2018-12-07T18:09:40.000-06:00",
            },
            "date": "2018-12-08T00:10:12.000+0000",
            "name": "run",
        },
        {
            "data": {
                "appId": "tacobot9000-0.1.0u1",
                "archive": True,
                "archivePath": ARCHIVE_PATH,
                "archiveSystem": "data-tacc-cloud",
                "batchQueue": "normal",
                "created": "2018-12-07T18:08:37.000-06:00",
                "endTime": None,
                "executionSystem": "hpc-tacc-stampede2",
                "id": "7381691026605150696-242ac11b-0001-007",
                "inputs": {"file1": "agave://data.tacc.cloud/examples/tacobot/test1.txt"},
                "lastUpdated": "2018-12-07T18:53:20.000-06:00",
                "maxRunTime": "01:00:00",
                "memoryPerNode": 1,
                "name": "TACObot job",
                "nodeCount": 1,
                "outputPath": "tacobot/job-7381691026605150696-242ac11b-0001-007-TACObot-job",
                "owner": "tacobot",
                "parameters": {"avocado": False, "cheese": True, "salsa": True},
                "processorsPerNode": 1,
                "startTime": "2018-12-07T18:09:49.000-06:00",
                "status": "FINISHED",
                "submitTime": "2018-12-07T18:09:40.000-06:00",
            },
            "date": "2018-12-08T00:53:45.000+0000",
            "name": "finish",
        },
    ],
    "last_event": "finish",
    "pipeline_uuid": "106bd127-e2d2-57ac-b9be-11ed06042e68",
    "session": "casual-bass",
    "state": "FINISHED",
    "task": "https://api.tacc.cloud/actors/v2/G46vjoAVzGkkz/executions/Myp6wvklV0zgQ",
    "updated": "2018-12-08T00:53:45.000+0000",
    "uuid": "10743f9e-f5ae-5b4c-859e-6774ef4ab08b",
}

EVENT_UUIDS = [
    "1083f4ff-c2b9-5190-bd9a-e6a406d9796a",
    "108a1b2c-c2b9-5190-bd9a-e6a406d9796b",
    "1080ffee-c2b9-5190-bd9a-e6a406d9796c",
]


def with_event_uuids(record: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(record)
    for entry, uuid in zip(out["history"], EVENT_UUIDS, strict=True):
        entry["uuid"] = uuid
    return out


def rfc3339(date: str) -> str:
    """The seed writes offsets as +0000; RFC 3339 (JSON Schema date-time) wants +00:00."""
    return date[:-5] + date[-5:-2] + ":" + date[-2:] if date.endswith("+0000") else date


def with_bookkeeping(record: dict[str, Any]) -> dict[str, Any]:
    """The fields our stored jobs carry that the seed's record lacks, and RFC 3339 dates."""
    out = {**copy.deepcopy(record), "created": "2018-12-08T00:08:32.000+00:00", "version": 3}
    out["updated"] = rfc3339(out["updated"])
    for entry in out["history"]:
        entry["date"] = rfc3339(entry["date"])
    return out


def test_seed_job_record_dates_are_not_rfc3339():
    record = with_event_uuids(with_bookkeeping(SEED_JOB_RECORD))
    record["updated"] = SEED_JOB_RECORD["updated"]
    err = refusal("pipelinejob_record", record)
    assert err.path == "updated"
    assert "date-time" in str(err)


def test_seed_job_record_is_refused_for_history_without_uuids():
    err = refusal("pipelinejob_record", SEED_JOB_RECORD)
    assert err.schema == "PipelineJob"
    for i in range(3):
        assert f"history/{i}: 'uuid' is a required property" in err.detail["errors"]
    # With the record-level bookkeeping fields present, the first failure is history/0.
    err = refusal("pipelinejob_record", with_bookkeeping(SEED_JOB_RECORD))
    assert err.path == "history/0"
    assert "'uuid' is a required property" in str(err)


def test_seed_job_record_is_refused_without_created_and_version():
    err = refusal("pipelinejob_record", with_event_uuids(SEED_JOB_RECORD))
    assert err.path == ""
    assert "'created'" in " ".join(err.detail["errors"])
    assert "'version'" in " ".join(err.detail["errors"])


def test_seed_job_record_with_event_uuids_and_bookkeeping_is_accepted():
    accepted("pipelinejob_record", with_bookkeeping(with_event_uuids(SEED_JOB_RECORD)))


def test_job_record_refuses_a_wrongly_typed_event_uuid():
    record = with_bookkeeping(with_event_uuids(SEED_JOB_RECORD))
    record["history"][1]["uuid"] = "1073f4ff-c2b9-5190-bd9a-e6a406d9796a"
    assert refusal("pipelinejob_record", record).path == "history/1/uuid"


def test_seed_history_entries_validate_once_they_have_uuids_and_rfc3339_dates():
    for entry in with_event_uuids(with_bookkeeping(SEED_JOB_RECORD))["history"]:
        accepted("pipelinejob_event", entry)


# -- Agave job callback --------------------------------------------------------------------

RUN_CALLBACK_BODY = SEED_JOB_RECORD["history"][1]["data"]


def test_seed_callback_body_without_links_is_refused():
    assert "_links" not in RUN_CALLBACK_BODY
    err = refusal("agave_job_callback", RUN_CALLBACK_BODY)
    assert err.schema == "AgaveJobsPost"
    assert "'_links'" in str(err)


def test_callback_body_with_links_is_accepted():
    accepted("agave_job_callback", {**RUN_CALLBACK_BODY, "_links": {}})
    accepted("agave_job_callback", {**SEED_JOB_RECORD["history"][2]["data"], "_links": {}})


def test_callback_body_requires_each_agave_field():
    body = {**RUN_CALLBACK_BODY, "_links": {}}
    for field in (
        "appId",
        "executionSystem",
        "owner",
        "archivePath",
        "archiveSystem",
        "status",
        "inputs",
        "parameters",
    ):
        partial = {k: v for k, v in body.items() if k != field}
        assert f"'{field}'" in str(refusal("agave_job_callback", partial))
    assert refusal("agave_job_callback", {**body, "status": 7}).path == "status"
