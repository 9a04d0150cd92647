"""Archive paths: ``/products/v2/<pipeline>/<hash of linkage>/<hash of data>[/<session>]``."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest

from pipelinejobs.domain import archive_paths
from pipelinejobs.domain.identifiers import Identifiers

DOMAIN = "sd2e.org"
PIPELINE = Identifiers(DOMAIN).pipeline([{"repo": "sd2e/tacobot:0.1"}])
HEX32 = re.compile(r"^[0-9a-f]{32}$")


def path(**changes: Any) -> str:
    kwargs: dict[str, Any] = {
        "pipeline_uuid": PIPELINE,
        "linkage": ["sample.tacc.abcde"],
        "data": {"appId": "tacobot9000-0.1.0u1"},
        "domain": DOMAIN,
        "instanced": False,
    }
    kwargs.update(changes)
    return archive_paths.archive_path(**kwargs)


def parts(text: str) -> list[str]:
    assert text.startswith("/products/v2/")
    return text.removeprefix("/products/v2/").split("/")


# -- digest -----------------------------------------------------------------------------------


def test_digest_is_a_uuid5_in_the_domains_namespace():
    value = ["sample.tacc.abcde"]
    digest = archive_paths.digest(value, DOMAIN)

    assert HEX32.match(digest)
    namespace = uuid.uuid3(uuid.NAMESPACE_DNS, DOMAIN)
    assert digest == uuid.uuid5(namespace, '["sample.tacc.abcde"]').hex


@pytest.mark.parametrize(
    ("one", "other", "same"),
    [
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}, True),
        ({"a": 1}, {"a": 1.5}, False),
        (["x", "y"], ["y", "x"], False),
        ({}, [], False),
        ({"é": "ü"}, {"é": "ü"}, True),
    ],
)
def test_digest_follows_the_canonical_json(one: Any, other: Any, same: bool):
    assert (archive_paths.digest(one, DOMAIN) == archive_paths.digest(other, DOMAIN)) is same


def test_digest_depends_on_the_domain():
    assert archive_paths.digest({"a": 1}, DOMAIN) != archive_paths.digest({"a": 1}, "example.org")


# -- session names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("moment", "stamp"),
    [
        (1_790_000_000.0, "20260921T141320Z"),
        (1_543_339_963.9, "20181127T173243Z"),  # the seed's eligible-awk-20181127T173243Z
        (0.0, "19700101T000000Z"),
    ],
)
def test_session_name_is_adjective_animal_and_utc_stamp(moment: float, stamp: str):
    name = archive_paths.session_name(lambda: moment)

    assert re.fullmatch(rf"[a-z]+-[a-z]+-{stamp}", name), name


def test_session_names_differ_between_runs_at_the_same_second():
    names = {archive_paths.session_name(lambda: 1_790_000_000.0) for _ in range(50)}

    assert len(names) > 1


def test_a_new_session_is_adjective_animal_as_the_original_library_made():
    session = archive_paths.new_session()

    assert re.fullmatch(r"[a-z]+-[a-z]+", session), session
    assert archive_paths.SESSION.fullmatch(session)


def test_the_instancing_directory_is_the_session_stamped():
    # The seed's archive path ends eligible-awk-20181127T173243Z.
    assert (
        archive_paths.instanced_directory("eligible-awk", lambda: 1_543_339_963.9)
        == "eligible-awk-20181127T173243Z"
    )
    assert archive_paths.instanced_directory("casual-bass-", lambda: 0.0) == (
        "casual-bass-19700101T000000Z"
    )


def test_an_instanced_archive_path_uses_the_session_given():
    instanced = path(instanced=True, clock=lambda: 1_790_000_000.0, session="casual-bass")

    assert parts(instanced)[-1] == "casual-bass-20260921T141320Z"


# -- archive paths --------------------------------------------------------------------------------


def test_archive_path_layout():
    found = parts(path())

    assert found == [
        PIPELINE.replace("-", ""),
        archive_paths.digest(["sample.tacc.abcde"], DOMAIN),
        archive_paths.digest({"appId": "tacobot9000-0.1.0u1"}, DOMAIN),
    ]
    assert all(HEX32.match(p) for p in found)


def test_instanced_archive_path_adds_a_session_from_the_clock():
    instanced = path(instanced=True, clock=lambda: 1_790_000_000.0)

    *base, session = parts(instanced)
    assert "/".join(base) == "/".join(parts(path()))
    assert re.fullmatch(r"[a-z]+-[a-z]+-20260921T141320Z", session)


@pytest.mark.parametrize(
    ("changes", "same"),
    [
        ({"linkage": ["sample.tacc.abcde", "sample.tacc.abcde"]}, True),
        ({"linkage": ("sample.tacc.abcde",)}, True),
        ({"data": {"appId": "tacobot9000-0.1.0u1"}}, True),
        ({"linkage": ["sample.tacc.other"]}, False),
        ({"data": {"appId": "other"}}, False),
        ({"domain": "example.org"}, False),
    ],
)
def test_archive_path_is_a_function_of_its_inputs(changes: dict[str, Any], same: bool):
    assert (path(**changes) == path()) is same


def test_linkage_order_does_not_matter():
    assert path(linkage=["m.2", "m.1", "m.2"]) == path(linkage=["m.1", "m.2"])


def test_no_data_is_empty_data():
    assert path(data=None) == path(data={})
    assert parts(path(data=None))[2] == archive_paths.digest({}, DOMAIN)
