"""Every schema file is a well-formed draft-07 schema that resolves offline."""

from __future__ import annotations

import json
import socket
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft7Validator, FormatChecker

from pipelinejobs.domain import validation
from pipelinejobs.errors import SchemaValidationError

SCHEMA_DIR = Path(str(resources.files("pipelinejobs.schemas")))
SCHEMA_FILES = sorted(SCHEMA_DIR.glob("*.json"))

JOB_UUID = "1073f4ff-c2b9-5190-bd9a-e6a406d9796a"
PIPELINE_UUID = "1064aaf1-459c-5e42-820d-b822aa4b3990"


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _refs(node: Any) -> list[str]:
    """Every ``$ref`` value anywhere in a JSON document."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_refs(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(_refs(item))
    return found


def test_schema_files_present():
    names = {p.name for p in SCHEMA_FILES}
    expected = {
        "pipeline_manager_create.json",
        "pipeline_manager_update.json",
        "pipelinejob_manager_event.json",
        "agave_job_callback.json",
        "pipelinejob_index.json",
        "pipelinejob_indexed.json",
        "agave_pipelinejob.json",
        "pipelinejob_uuid.json",
        "pipeline_uuid.json",
        "pipelinejob_event_uuid.json",
        "file_uuid.json",
        "sample_uuid.json",
        "experiment_uuid.json",
        "measurement_uuid.json",
        "pipelinejob_eventname.json",
        "pipelinejob_statename.json",
        "update_token.json",
        "processing_level.json",
        "agave_files_uri.json",
        "experiment_reference.json",
        "pipelinejob_event.json",
        "pipeline.json",
        "pipelinejob.json",
        "file.json",
        "nonce.json",
        "execution.json",
        "api_key.json",
    }
    assert expected <= names, sorted(expected - names)


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_schema_is_draft7_with_id_title_description(path: Path):
    doc = _load(path)
    Draft7Validator.check_schema(doc)
    assert doc["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert doc["$id"] == validation.BASE_URI + path.name
    assert doc["$id"] == "https://schema.catalog.sd2e.org/schemas/" + path.name
    assert isinstance(doc.get("title"), str) and doc["title"]
    assert isinstance(doc.get("description"), str) and doc["description"]


@pytest.mark.parametrize("path", SCHEMA_FILES, ids=lambda p: p.name)
def test_every_ref_is_relative_and_resolves(path: Path):
    doc = _load(path)
    resolver = validation.registry().resolver(base_uri=doc["$id"])
    for ref in _refs(doc):
        assert "://" not in ref, f"{path.name}: $ref {ref!r} is not relative"
        resolved = resolver.lookup(ref)
        assert isinstance(resolved.contents, dict), f"{path.name}: {ref!r}"


def test_registry_knows_every_file_by_id():
    registry = validation.registry()
    for path in SCHEMA_FILES:
        assert registry.contents(validation.BASE_URI + path.name) == _load(path)


def test_titles_are_exposed():
    assert validation.title("pipeline_manager_create") == "PipelinesDefinition"
    assert validation.title("pipelinejob_manager_event") == "PipelineJobManagerEvent"
    assert validation.title("agave_pipelinejob") == "AgavePipelineJob"


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch):
    """Forbid every socket, and rebuild the registry and validators under that ban."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("schema validation tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    validation.registry.cache_clear()
    validation.validator.cache_clear()
    validation.schema_documents.cache_clear()
    yield
    validation.registry.cache_clear()
    validation.validator.cache_clear()
    validation.schema_documents.cache_clear()


def test_no_network_fixture_really_blocks(no_network):
    with pytest.raises(AssertionError):
        socket.create_connection(("schema.catalog.sd2e.org", 443))
    with pytest.raises(AssertionError):
        socket.socket()


def test_cross_file_refs_validate_offline(no_network):
    validation.validate("pipelinejob_manager_event", {"uuid": JOB_UUID, "name": "finish"})
    with pytest.raises(SchemaValidationError) as err:
        validation.validate("pipelinejob_manager_event", {"uuid": PIPELINE_UUID, "name": "finish"})
    assert err.value.path == "uuid"

    launch = {
        "parameters": {"sample_id": "sample.tacc.abcde"},
        "job_definition": {"appId": "tacobot9000-0.1.0u1"},
        "archive_path": "agave://data-sd2e-community/products/v2/x",
        "processing_level": "2",
    }
    validation.validate("agave_pipelinejob", launch)
    with pytest.raises(SchemaValidationError) as err:
        validation.validate("agave_pipelinejob", {**launch, "archive_path": "/products/v2/x"})
    assert err.value.path == "archive_path"
    with pytest.raises(SchemaValidationError) as err:
        validation.validate("agave_pipelinejob", {**launch, "processing_level": "4"})
    assert err.value.path == "processing_level"


def test_unknown_schema_name_is_a_key_error():
    with pytest.raises(KeyError):
        validation.validator("no_such_schema")


TYPED_UUIDS = [
    ("experiment_uuid", "102"),
    ("sample_uuid", "103"),
    ("measurement_uuid", "104"),
    ("file_uuid", "105"),
    ("pipeline_uuid", "106"),
    ("pipelinejob_uuid", "107"),
    ("pipelinejob_event_uuid", "108"),
]


@pytest.mark.parametrize(("name", "prefix"), TYPED_UUIDS)
def test_typed_uuid_prefixes(name: str, prefix: str):
    good = f"{prefix}3f4ff-c2b9-5190-bd9a-e6a406d9796a"
    assert validation.is_valid(name, good)
    assert validation.is_valid(name, "uri:urn:" + good)
    for other, other_prefix in TYPED_UUIDS:
        if other != name:
            assert not validation.is_valid(name, f"{other_prefix}3f4ff-c2b9-5190-bd9a-e6a406d9796a")
    assert not validation.is_valid(name, good.upper())
    assert not validation.is_valid(name, good[:-1])
    assert not validation.is_valid(name, good + "0")
    assert not validation.is_valid(name, 1073)


def test_event_and_state_names():
    events = [
        "create",
        "run",
        "update",
        "resource",
        "fail",
        "finish",
        "index",
        "indexed",
        "validate",
        "validated",
        "reject",
        "finalize",
        "retire",
        "reset",
        "ready",
    ]
    states = [
        "CREATED",
        "RUNNING",
        "FAILED",
        "FINISHED",
        "INDEXING",
        "VALIDATING",
        "VALIDATED",
        "REJECTED",
        "FINALIZED",
        "RETIRED",
        "RESET",
    ]
    assert sorted(validation.schema_documents()["pipelinejob_eventname"]["enum"]) == sorted(events)
    assert sorted(validation.schema_documents()["pipelinejob_statename"]["enum"]) == sorted(states)
    assert all(validation.is_valid("pipelinejob_eventname", e) for e in events)
    assert all(validation.is_valid("pipelinejob_statename", s) for s in states)
    assert not validation.is_valid("pipelinejob_eventname", "explode")
    assert not validation.is_valid("pipelinejob_eventname", "FINISH")
    assert not validation.is_valid("pipelinejob_statename", "finished")


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        (
            "update_token",
            ["0dc73dc3ff39b49a", "0dc73dc3ff39b49a1"],
            ["0dc73dc3ff39b49", "0dc73dc3ff39b49a12", 1234567890123456],
        ),
        (  # the form common/tokens.py mints, and nothing a URL could not carry
            "update_token",
            ["mz0y3k2c0dc73dc3f"],
            ["0DC73DC3FF39B49A", "x" * 16, "0dc73dc3ff39b49\x00", "0dc73dc3ff39b49a\n"],
        ),
        (
            "agave_archive_uri",
            ["agave://data-sd2e-community/products/v2/x", "agave://s/./a//b/", "agave://s/..a"],
            [
                "agave://data-sd2e-community/",
                "agave://s/./",
                "agave://s/a/../b",
                "agave://s/a/..",
                "agave://s/a\\b",
                "agave://s/a\x00",
            ],
        ),
        (
            "processing_level",
            ["0", "1", "2", "3", "Reference", "User", "Unknown"],
            ["4", 1, "reference", ""],
        ),
        (
            "agave_files_uri",
            ["agave://data.tacc.cloud/examples/tacobot/test1.txt", "agave://data-sd2e-community/"],
            ["agave:///x", "https://data.tacc.cloud/x", "/products/v2/x", "agave://a b/x"],
        ),
        ("experiment_reference", ["NovelChassis-Nand-Gate"], ["", 7]),
    ],
)
def test_small_types(name: str, good: list[Any], bad: list[Any]):
    for value in good:
        assert validation.is_valid(name, value), value
    for value in bad:
        assert not validation.is_valid(name, value), value


# -- leaf schemas are inlined once; verdicts must not change ------------------------------

_SAMPLES = [
    {},
    {"uuid": "1073f4ff-c2b9-5190-bd9a-e6a406d9796a", "name": "finish", "token": "0dc73dc3ff39b49a"},
    {"uuid": "1063f4ff-c2b9-5190-bd9a-e6a406d9796a", "name": "finish"},
    {"uuid": "1073f4ff-c2b9-5190-bd9a-e6a406d9796a", "name": "explode"},
    {
        "uuid": "1073f4ff-c2b9-5190-bd9a-e6a406d9796a",
        "name": "index",
        "level": "2",
        "filters": ["a"],
        "token": "0dc73dc3ff39b49",
    },
    {
        "parameters": {"sample_id": ["sample.tacc.a", "1033f4ff-c2b9-5190-bd9a-e6a406d9796a"]},
        "job_definition": {"appId": "x"},
        "processing_level": "Reference",
    },
    {"parameters": {"sample_id": "1043f4ff-c2b9-5190-bd9a-e6a406d9796a"}, "job_definition": {}},
    "1073f4ff-c2b9-5190-bd9a-e6a406d9796a",
    "RUNNING",
    "2",
    7,
]


@pytest.mark.parametrize("name", sorted(validation.schema_documents()))
def test_inlining_leaf_schemas_changes_no_verdict(name: str) -> None:
    raw = Draft7Validator(
        validation.schema_documents()[name],
        registry=validation.registry(),
        format_checker=FormatChecker(),
    )
    fast = validation.validator(name)
    for instance in _SAMPLES:
        assert raw.is_valid(instance) == fast.is_valid(instance), instance


def test_inlined_leaves_keep_their_names_in_errors() -> None:
    fast = validation.validator("pipelinejob_manager_event").schema
    assert fast["properties"]["uuid"][validation.INLINED] == "pipelinejob_uuid"
    assert "$ref" not in fast["properties"]["uuid"]


@pytest.mark.parametrize("kind", ["sample", "experiment", "measurement"])
def test_readable_ids_mean_the_same_to_python_and_to_ecma_262(kind: str) -> None:
    """``\\S`` differs between the two (Python counts U+001C as a space, ECMA-262
    does not), so the patterns spell the spaces out; and ``$`` is the end of the text
    in both, not "before a final newline" as in Python's own ``re``."""
    ref = {"$ref": f"{validation.BASE_URI}agave_pipelinejob.json#/definitions/{kind}_ref"}
    validator = validation.Draft7(ref, registry=validation.registry())

    assert validator.is_valid(f"{kind}.tacc.abc-1")
    for bad in (f"{kind}.tacc.a\x1cb", f"{kind}.tacc.a b", f"{kind}.tacc.abc\n"):
        assert not validator.is_valid(bad), bad
