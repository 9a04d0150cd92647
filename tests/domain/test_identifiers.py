"""Typed UUIDs: content-derived, namespaced by domain, type readable from the prefix."""

from __future__ import annotations

import uuid

import pytest

from pipelinejobs.domain.identifiers import (
    PREFIXES,
    UUID_TYPES,
    Identifiers,
    require_type,
    uuid_type,
)
from pipelinejobs.errors import UnknownIdentifierType

IDS = Identifiers("sd2e.org")
COMPONENTS = [{"id": "tacobot9000-0.1.0u1", "inputs": {}, "parameters": {"a": 1, "b": 2}}]


def test_type_table_covers_100_to_125_of_the_original():
    assert PREFIXES["pipeline"] == "106" and PREFIXES["pipelinejob"] == "107"
    assert PREFIXES["pipelinejob_event"] == "108" and PREFIXES["file"] == "105"
    assert PREFIXES["experiment"] == "102" and PREFIXES["sample"] == "103"
    assert PREFIXES["measurement"] == "104"
    # 100-125 are the original's; 126 (runs, issue 15) is this service's extension.
    assert all(100 <= int(p) <= 125 for p in UUID_TYPES if p != "126")
    assert UUID_TYPES["126"][0] == "pipelinejob_run"
    assert len(UUID_TYPES) == len(PREFIXES)


@pytest.mark.parametrize("kind", sorted(PREFIXES))
def test_every_type_round_trips(kind):
    value = IDS.typed("some text", kind)
    assert value.startswith(PREFIXES[kind])
    assert uuid_type(value) == kind
    assert uuid.UUID(value).version == 5


def test_typed_uuid_is_uuid5_in_the_domain_namespace_with_prefix():
    namespace = uuid.uuid3(uuid.NAMESPACE_DNS, "sd2e.org")
    plain = uuid.uuid5(namespace, "hello").hex
    assert IDS.typed("hello", "file").replace("-", "") == "105" + plain[3:]
    assert Identifiers("example.org").typed("hello", "file") != IDS.typed("hello", "file")


def test_pipeline_uuid_depends_on_components_only():
    reordered_keys = [{"parameters": {"b": 2, "a": 1}, "inputs": {}, "id": "tacobot9000-0.1.0u1"}]
    assert IDS.pipeline(COMPONENTS) == IDS.pipeline(reordered_keys)
    changed = [{**COMPONENTS[0], "parameters": {"a": 1, "b": 3}}]
    assert IDS.pipeline(changed) != IDS.pipeline(COMPONENTS)
    assert uuid_type(IDS.pipeline(COMPONENTS)) == "pipeline"


def test_job_uuid_from_pipeline_linkage_and_data():
    pipe = IDS.pipeline(COMPONENTS)
    base = IDS.job(pipe, ["sample.a.1", "sample.a.2"], {"x": 1, "y": [1, 2]})
    assert base == IDS.job(pipe, ["sample.a.2", "sample.a.1", "sample.a.1"], {"y": [1, 2], "x": 1})
    assert base != IDS.job(pipe, ["sample.a.1"], {"x": 1, "y": [1, 2]})
    assert base != IDS.job(pipe, ["sample.a.1", "sample.a.2"], {"x": 2, "y": [1, 2]})
    assert base != IDS.job(
        IDS.pipeline([{"id": "other"}]), ["sample.a.1", "sample.a.2"], {"x": 1, "y": [1, 2]}
    )
    assert IDS.job(pipe, [], None) == IDS.job(pipe, [], {})
    assert uuid_type(base) == "pipelinejob"


def test_event_uuid_is_deterministic_only_with_a_delivery_id():
    job = IDS.typed("job", "pipelinejob")
    assert IDS.event(job, "d1") == IDS.event(job, "d1") != IDS.event(job, "d2")
    assert IDS.event(job) != IDS.event(job)
    assert uuid_type(IDS.event(job)) == "pipelinejob_event"


@pytest.mark.parametrize(
    "bad",
    ["nope", "999f4ff-c2b9-5190-bd9a-e6a406d9796a", "9993f4ff-c2b9-5190-bd9a-e6a406d9796a", ""],
)
def test_unknown_or_malformed_uuids_are_refused(bad):
    with pytest.raises(UnknownIdentifierType):
        uuid_type(bad)


def test_require_type_names_both_types():
    with pytest.raises(UnknownIdentifierType, match="is a pipeline UUID .*expected a pipelinejob"):
        require_type(IDS.pipeline(COMPONENTS), "pipelinejob")
    with pytest.raises(UnknownIdentifierType, match="unknown identifier type"):
        IDS.typed("x", "spaceship")


def test_seed_uuids_read_back_their_types():
    assert uuid_type("1073f4ff-c2b9-5190-bd9a-e6a406d9796a") == "pipelinejob"
    assert uuid_type("1064aaf1-459c-5e42-820d-b822aa4b3990") == "pipeline"
    assert uuid_type("uri:urn:1073f4ff-c2b9-5190-bd9a-e6a406d9796a") == "pipelinejob"
