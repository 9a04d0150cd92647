"""The stored-document schemas: a minimal record is accepted, a record missing a field is not."""

from __future__ import annotations

from typing import Any

import pytest

from pipelinejobs.domain import validation
from pipelinejobs.errors import SchemaValidationError

NOW = "2024-05-01T12:00:00Z"
SHA = "a" * 64
JOB_UUID = "1073f4ff-c2b9-5190-bd9a-e6a406d9796a"
PIPELINE_UUID = "1064aaf1-459c-5e42-820d-b822aa4b3990"
EVENT_UUID = "1083f4ff-c2b9-5190-bd9a-e6a406d9796a"
FILE_UUID = "1053f4ff-c2b9-5190-bd9a-e6a406d9796a"

MINIMAL: dict[str, dict[str, Any]] = {
    "pipelinejob_event": {"uuid": EVENT_UUID, "name": "create", "date": NOW, "data": {}},
    "pipeline": {
        "uuid": PIPELINE_UUID,
        "name": "Tacobot 9001",
        "components": [{"repo": "sd2e/tacobot:0.1.0"}],
        "status": "active",
        "created": NOW,
        "updated": NOW,
        "version": 0,
    },
    "pipelinejob": {
        "uuid": JOB_UUID,
        "pipeline_uuid": PIPELINE_UUID,
        "state": "CREATED",
        "last_event": "create",
        "created": NOW,
        "updated": NOW,
        "version": 0,
        "event_count": 1,
        "data": {},
    },
    "pipelinejob_event_record": {
        "uuid": EVENT_UUID,
        "job_uuid": JOB_UUID,
        "seq": 1,
        "name": "create",
        "date": NOW,
        "data": {},
        "previous_state": None,
        "version": 0,
    },
    "pipelinejob_record": {
        "uuid": JOB_UUID,
        "pipeline_uuid": PIPELINE_UUID,
        "state": "CREATED",
        "last_event": "create",
        "created": NOW,
        "updated": NOW,
        "version": 0,
        "history": [{"uuid": EVENT_UUID, "name": "create", "date": NOW, "data": {}}],
        "data": {},
    },
    "file": {
        "uuid": FILE_UUID,
        "name": "out.csv",
        "path": "products/v2/106/abc/def/out.csv",
        "storage_system": "local",
        "level": "1",
        "generated_by": [JOB_UUID],
        "present": True,
        "created": NOW,
        "updated": NOW,
        "version": 0,
    },
    "nonce": {
        "id": SHA,
        "actor": "jobs-manager",
        "level": "EXECUTE",
        "max_uses": -1,
        "remaining_uses": -1,
        "owner": "tacobot",
        "created": NOW,
        "version": 0,
    },
    "execution": {
        "id": "Myp6wvklV0zgQ",
        "actor": "jobs-manager",
        "status": "SUBMITTED",
        "message": {"uuid": JOB_UUID, "name": "finish"},
        "created": NOW,
        "version": 0,
    },
    "api_key": {"id": SHA, "role": "user", "created": NOW, "revoked": False, "version": 0},
}


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_minimal_record_is_accepted(name: str):
    validation.validate(name, MINIMAL[name])


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_each_required_field_is_required(name: str):
    required = validation.schema_documents()[name]["required"]
    assert required
    for field in required:
        record = {k: v for k, v in MINIMAL[name].items() if k != field}
        with pytest.raises(SchemaValidationError) as err:
            validation.validate(name, record)
        assert err.value.path == ""
        assert f"'{field}' is a required property" in str(err.value)


@pytest.mark.parametrize("name", sorted(MINIMAL))
def test_unknown_field_is_refused(name: str):
    assert not validation.is_valid(name, {**MINIMAL[name], "surprise": 1})


def test_required_fields_are_as_designed():
    docs = validation.schema_documents()
    assert set(docs["pipelinejob_event"]["required"]) == {"uuid", "name", "date", "data"}
    assert set(docs["pipeline"]["required"]) == {
        "uuid",
        "name",
        "components",
        "status",
        "created",
        "updated",
        "version",
    }
    assert set(docs["pipelinejob"]["required"]) == {
        "uuid",
        "pipeline_uuid",
        "state",
        "last_event",
        "created",
        "updated",
        "version",
        "event_count",
        "data",
    }
    assert set(docs["pipelinejob_record"]["required"]) == {
        "uuid",
        "pipeline_uuid",
        "state",
        "last_event",
        "created",
        "updated",
        "version",
        "history",
        "data",
    }
    assert set(docs["pipelinejob_event_record"]["required"]) == {
        "uuid",
        "job_uuid",
        "seq",
        "name",
        "date",
        "data",
        "previous_state",
        "version",
    }
    assert set(docs["file"]["required"]) == {
        "uuid",
        "name",
        "path",
        "storage_system",
        "level",
        "generated_by",
        "present",
        "created",
        "updated",
        "version",
    }
    assert set(docs["nonce"]["required"]) == {
        "id",
        "actor",
        "level",
        "max_uses",
        "remaining_uses",
        "owner",
        "created",
        "version",
    }
    assert set(docs["execution"]["required"]) == {
        "id",
        "actor",
        "status",
        "message",
        "created",
        "version",
    }
    assert set(docs["api_key"]["required"]) == {"id", "role", "created", "revoked", "version"}


def test_the_record_shape_is_the_stored_job_with_its_history_inline():
    """The read API's job (the seed's record) and the stored job list the same fields,
    but for the history: inline there, a log with its newest record here."""
    docs = validation.schema_documents()
    stored, shown = docs["pipelinejob"]["properties"], docs["pipelinejob_record"]["properties"]
    assert set(shown) - set(stored) == {"history", "history_next"}
    assert set(stored) - set(shown) == {"last_entry"}
    for name in set(stored) & set(shown):
        assert shown[name] == stored[name], name


FULL_JOB = {
    **MINIMAL["pipelinejob"],
    "event_count": 2,
    "last_entry": {**MINIMAL["pipelinejob_event_record"], "seq": 2, "name": "finish"},
    "state": "FINISHED",
    "last_event": "finish",
    "version": 2,
    "token_rotation": 0,
    "archive_path": "products/v2/1064aaf1459c5e42820db822aa4b3990/abc/def",
    "archive_system": "local",
    "child_of": ["sample.tacc.abcde"],
    "derived_from": [],
    "generated_by": [PIPELINE_UUID],
    "agent": "https://api.tacc.cloud/actors/v2/G46vjoAVzGkkz",
    "task": "https://api.tacc.cloud/actors/v2/G46vjoAVzGkkz/executions/Myp6wvklV0zgQ",
    "session": "casual-bass",
    "index": {"patterns": ["sample-uw_biofab-141715"], "level": "2"},
    "launch": {"backend": "local", "pid": 1234},
}


@pytest.mark.parametrize(
    ("name", "record", "change", "path"),
    [
        ("pipelinejob", FULL_JOB, {}, None),
        ("pipelinejob", FULL_JOB, {"state": "DONE"}, "state"),
        ("pipelinejob", FULL_JOB, {"last_event": "explode"}, "last_event"),
        ("pipelinejob", FULL_JOB, {"uuid": PIPELINE_UUID}, "uuid"),
        ("pipelinejob", FULL_JOB, {"pipeline_uuid": JOB_UUID}, "pipeline_uuid"),
        ("pipelinejob", FULL_JOB, {"version": -1}, "version"),
        ("pipelinejob", FULL_JOB, {"index": {"patterns": [], "level": "4"}}, "index/level"),
        ("pipelinejob", FULL_JOB, {"index": {"filters": []}}, "index"),
        ("pipelinejob", FULL_JOB, {"child_of": "sample.tacc.abcde"}, "child_of"),
        ("pipelinejob", FULL_JOB, {"event_count": -1}, "event_count"),
        ("pipelinejob", FULL_JOB, {"last_entry": {"uuid": EVENT_UUID}}, "last_entry"),
        ("pipelinejob", FULL_JOB, {"history": []}, ""),
        ("pipelinejob_event_record", MINIMAL["pipelinejob_event_record"], {"seq": 0}, "seq"),
        (
            "pipelinejob_event_record",
            MINIMAL["pipelinejob_event_record"],
            {"previous_state": "DONE"},
            "previous_state",
        ),
        (
            "pipelinejob_event_record",
            MINIMAL["pipelinejob_event_record"],
            {"previous_state": "FINISHED", "sender": "key:abc"},
            None,
        ),
        (
            "pipelinejob_event_record",
            MINIMAL["pipelinejob_event_record"],
            {"job_uuid": PIPELINE_UUID},
            "job_uuid",
        ),
        ("pipelinejob_record", MINIMAL["pipelinejob_record"], {"history_next": 1000}, None),
        ("pipelinejob_record", MINIMAL["pipelinejob_record"], {"history_next": 0}, "history_next"),
        ("pipeline", MINIMAL["pipeline"], {"status": "deleted"}, "status"),
        ("pipeline", MINIMAL["pipeline"], {"components": []}, "components"),
        ("pipeline", MINIMAL["pipeline"], {"components": [{"id": "x"}]}, "components/0"),
        (
            "pipeline",
            MINIMAL["pipeline"],
            {
                "processing_levels": ["1"],
                "accepts": ["CSV"],
                "produces": ["PNG"],
                "collections_levels": ["sample"],
                "description": "d",
                "token_rotation": 1,
            },
            None,
        ),
        ("pipeline", MINIMAL["pipeline"], {"processing_levels": ["4"]}, "processing_levels/0"),
        (
            "file",
            MINIMAL["file"],
            {
                "size": 10,
                "checksum": SHA,
                "mtime": NOW,
                "type": "CSV",
                "job_uuid": JOB_UUID,
                "relative_path": "out.csv",
                "child_of": ["sample.tacc.abcde"],
            },
            None,
        ),
        ("file", MINIMAL["file"], {"size": -1}, "size"),
        ("file", MINIMAL["file"], {"checksum": "ABC"}, "checksum"),
        ("file", MINIMAL["file"], {"level": "4"}, "level"),
        ("file", MINIMAL["file"], {"uuid": JOB_UUID}, "uuid"),
        ("nonce", MINIMAL["nonce"], {"max_uses": 5, "remaining_uses": 5, "expires": None}, None),
        ("nonce", MINIMAL["nonce"], {"expires": NOW, "description": "d", "role": "user"}, None),
        ("nonce", MINIMAL["nonce"], {"max_uses": 0}, "max_uses"),
        ("nonce", MINIMAL["nonce"], {"max_uses": -2}, "max_uses"),
        ("nonce", MINIMAL["nonce"], {"remaining_uses": -2}, "remaining_uses"),
        ("nonce", MINIMAL["nonce"], {"level": "ADMIN"}, "level"),
        ("nonce", MINIMAL["nonce"], {"id": "TACC_XXXXxxxxYz"}, "id"),
        (
            "execution",
            MINIMAL["execution"],
            {
                "status": "ERROR",
                "error": {"error": "NotFound"},
                "result": None,
                "logs": ["x"],
                "started": NOW,
                "finished": None,
                "params": {},
                "progress": {},
            },
            None,
        ),
        ("execution", MINIMAL["execution"], {"status": "DONE"}, "status"),
        ("execution", MINIMAL["execution"], {"id": ""}, "id"),
        ("execution", MINIMAL["execution"], {"error": "boom"}, "error"),
        ("api_key", MINIMAL["api_key"], {"role": "admin", "description": "ci"}, None),
        ("api_key", MINIMAL["api_key"], {"role": "root"}, "role"),
        ("api_key", MINIMAL["api_key"], {"revoked": "no"}, "revoked"),
        ("pipelinejob_event", MINIMAL["pipelinejob_event"], {"name": "explode"}, "name"),
        ("pipelinejob_event", MINIMAL["pipelinejob_event"], {"uuid": JOB_UUID}, "uuid"),
        ("pipelinejob_event", MINIMAL["pipelinejob_event"], {"data": None}, "data"),
    ],
)
def test_field_constraints(
    name: str, record: dict[str, Any], change: dict[str, Any], path: str | None
):
    instance = {**record, **change}
    if path is None:
        validation.validate(name, instance)
    else:
        with pytest.raises(SchemaValidationError) as err:
            validation.validate(name, instance)
        assert err.value.path == path
