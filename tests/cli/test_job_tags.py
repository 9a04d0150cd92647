"""``jobs tag`` and ``jobs list --tag --owner`` (issue 15), against a served gateway
(the fixtures of test_people.py)."""

from __future__ import annotations

import json

import pytest

from tests.cli.test_people import Served, launched, pairs
from tests.cli.test_people import served as served  # noqa: F401 (a fixture)


def test_jobs_tag_sets_and_removes_and_list_filters_by_tag_and_owner(served: Served) -> None:
    job = launched(served)
    uuid = job["uuid"]

    code, out, err = served.cli("jobs", "tag", uuid, "--set", "experiment=e1", "--set", "k=v")
    assert (code, err) == (0, "")
    assert out == f"job {uuid} tags: experiment=e1, k=v\n"
    code, out, err = served.cli("jobs", "tag", uuid, "--remove", "k")
    assert out == f"job {uuid} tags: experiment=e1\n"

    code, out, err = served.cli("jobs", "list", "--tag", "experiment:e1", "--owner", "me")
    assert code == 0 and err == ""
    assert out.splitlines()[1].split()[0] == uuid
    code, out, _ = served.cli("jobs", "list", "--tag", "experiment:e2")
    assert code == 0 and out == "no jobs\n"

    code, out, _ = served.cli("jobs", "show", uuid)
    shown = pairs(out)
    assert shown["owner"] == served.rt.jobs.get(uuid)["owner"]
    assert shown["tags.experiment"] == "e1"

    code, out, _ = served.cli("jobs", "list", "--tag", "experiment:e1", "--json")
    assert [j["uuid"] for j in json.loads(out)["result"]["jobs"]] == [uuid]


def test_jobs_tag_needs_something_to_change(served: Served) -> None:
    code, out, err = served.cli("jobs", "tag", "107" + "0" * 5 + "-0000-5000-8000-000000000000")
    assert code != 0 and out == ""
    assert "jobs tag needs --set KEY=VALUE or --remove KEY" in err


def test_a_bad_tag_filter_is_refused_naming_it(served: Served) -> None:
    code, out, err = served.cli("jobs", "list", "--tag", "nocolon")
    assert code != 0 and out == ""
    assert "'tag'" in err


@pytest.mark.parametrize("value", ["nokey", "=v"])
def test_set_needs_key_equals_value(served: Served, value: str) -> None:
    with pytest.raises(SystemExit) as info:
        served.cli("jobs", "tag", "x", "--set", value)
    assert info.value.code == 2
