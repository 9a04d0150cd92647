"""``runs create|list|show`` (issue 15), against a served gateway (the fixtures of
test_people.py): human output by default, the gateway's answer with ``--json``."""

from __future__ import annotations

import json

from tests.cli.test_people import LAUNCH, PIPELINE, Served, launched, pairs
from tests.cli.test_people import served as served  # noqa: F401 (a fixture)


def test_runs_create_list_and_show(served: Served) -> None:
    job = launched(served)  # registers the pipeline; a job outside the run
    pipeline = served.rt.jobs.get(job["uuid"])["pipeline_uuid"]

    code, out, err = served.cli(
        "runs", "create", "--pipeline-uuid", pipeline, "--name", "batch 1",
        "--priority", "high", "--set-tag", "experiment=e1", "--context", '{"request": "r7"}',
    )  # fmt: skip
    assert (code, err) == (0, "")
    run = served.rt.ids.run(pipeline, "batch 1")
    assert out == f"run {run} created: batch 1, priority high\n"
    code, out, _ = served.cli("runs", "create", "--pipeline-uuid", pipeline, "--name", "batch 1")
    assert out == f"run {run} already exists (unchanged): batch 1, priority high\n"

    launch = {**LAUNCH, "parameters": {"sample_id": "sample.tacc.inrun"}, "run": run}
    assert served.run("launcher-proxy", launch, "--sync")[0] == 0

    code, out, err = served.cli("runs", "list", "--priority", "high", "--tag", "experiment:e1")
    assert (code, err) == (0, "")
    assert out.splitlines()[0].split() == ["UUID", "PRIORITY", "CREATED", "NAME"]
    assert out.splitlines()[1].split()[:2] == [run, "high"]
    assert served.cli("runs", "list", "--priority", "low") == (0, "no runs\n", "")

    code, out, err = served.cli("runs", "show", run)
    assert (code, err) == (0, "")
    shown = pairs(out)
    assert shown["name"] == "batch 1" and shown["jobs"] == "1"
    assert shown["tags.experiment"] == "e1" and shown["domain_context.request"] == "r7"
    assert out.splitlines()[-1].startswith("jobs by state: ")

    code, out, _ = served.cli("runs", "show", run, "--json")
    answer = json.loads(out)["result"]
    assert answer["uuid"] == run and sum(answer["counts"].values()) == 1
    assert answer["status"] in ("RUNNING", "COMPLETED")


def test_runs_create_refused_names_the_reason(served: Served) -> None:
    assert served.run("pipelines-manager", PIPELINE, "--sync")[0] == 0
    unknown = served.rt.ids.pipeline([{"id": "nobody"}])
    code, out, err = served.cli("runs", "create", "--pipeline-uuid", unknown, "--name", "x")
    assert code != 0 and out == ""
    assert f"no pipeline {unknown}" in err
    code, out, err = served.cli("runs", "show", served.rt.ids.run(unknown, "x"))
    assert code != 0 and "no run" in err
