"""The seed's worked launch example, sent as written to a real ``pipelinejobs serve``,
ends FINISHED and indexed automatically — level "1", every file — its record holding
``session``, absolute ``agent``/``task``, ``generated_by`` and ``child_of`` (issue 13).

What runs is the pipeline's: the admin registers ``tacobot9000-0.1.0u1`` as a local
command that declares the variables the example sets (``file1``, ``salsa``,
``avocado``, ``cheese``) and writes three files into its archive directory; the
supervisor reports RUNNING and FINISHED over HTTP with the job's nonce and token,
as Agave would."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator

import pytest
import requests

from pipelinejobs.runtime.actor import actor_id

from .conftest import _free_port, wait_for
from .server import Server, start_server

#: The seed's "worked example of the current example job request", verbatim.
SEED_LAUNCH = """
{
"parameters": {
"sample_id": "sample.tacc.abcde"
},
"job_definition": {
"appId": "tacobot9000-0.1.0u1",
"name": "TACObot job",
"inputs": {
"file1": "agave://data.tacc.cloud/examples/tacobot/test1.txt"
},
"parameters": {
"salsa": true,
"avocado": false,
"cheese": true
},
"maxRunTime": "01:00:00"
}
}
"""
#: What the tacobot writes: a table and a picture of the sample, and a note.
TACOBOT = (
    "import os, pathlib; d = pathlib.Path('sample.tacc.abcde'); d.mkdir(); "
    "(d / 'tacos.csv').write_text('eggs,salsa\\n2,' + os.environ['salsa'] + '\\n'); "
    "pathlib.Path('sample-tacc-abcde.png').write_text('(a picture of tacos)'); "
    "pathlib.Path('notes.txt').write_text(os.environ['file1'])"
)
OUTPUTS = ["notes.txt", "sample-tacc-abcde.png", "sample.tacc.abcde/tacos.csv"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("seed") / "data", _free_port())
    yield running
    running.stop()


def post(server: Server, actor: str, body: str | dict) -> dict:
    answer = requests.post(
        f"{server.url}/actors/v2/{actor}/messages",
        params={"_abaco_synchronous": "true"},
        headers={"Authorization": f"Bearer {server.admin_key}"},
        data=body if isinstance(body, str) else json.dumps(body),
        timeout=60,
    )
    assert answer.status_code == 200, answer.text + server.output()
    return answer.json()["result"]


def test_the_seeds_worked_example_ends_finished_and_indexed(server: Server) -> None:
    variable = {"pattern": "^[A-Za-z0-9_.:/-]+$", "required": True}
    pipeline = post(
        server,
        "pipelines-manager",
        {
            "name": "Tacobot 9000",
            "description": "Breakfast tacos out of CSV files",
            "components": [
                {
                    "id": "tacobot9000-0.1.0u1",
                    "command": [sys.executable, "-c", TACOBOT],
                    "variables": {n: variable for n in ("file1", "salsa", "avocado", "cheese")},
                }
            ],
            "processing_levels": ["1"],
        },
    )["result"]

    launch = post(server, "launcher-proxy", SEED_LAUNCH)
    result = launch["result"]
    assert launch["status"] == "COMPLETE", launch
    assert result["launch"]["backend"] == "local"
    auth = {"Authorization": f"Bearer {server.admin_key}"}

    def indexed() -> dict | None:
        got = requests.get(f"{server.url}/jobs/{result['uuid']}", headers=auth, timeout=10)
        job = got.json()["result"]
        return job if job["last_event"] == "indexed" else None

    job: dict = wait_for(indexed, 60, "the job to be indexed", server.output)  # type: ignore[assignment]

    assert job["state"] == "FINISHED"
    assert [h["name"] for h in job["history"]] == [
        "create",
        "run",
        "run",
        "finish",
        "index",
        "indexed",
    ]
    assert job["index"] == {"patterns": [], "level": "1"}
    index = next(h for h in job["history"] if h["name"] == "index")
    assert index["data"]["level"] == "1" and not index["data"].get("filters")
    files = requests.get(f"{server.url}/jobs/{job['uuid']}/files", headers=auth, timeout=10)
    found = sorted((f["relative_path"], f["level"]) for f in files.json()["result"]["files"])
    assert found == [(path, "1") for path in OUTPUTS]

    # The record, field by field against the seed's.
    agent = f"{server.url}/actors/v2/{actor_id('launcher-proxy')}"
    assert job["agent"] == agent  # the URL the launch came in on: no public_url set
    assert job["task"] == f"{agent}/executions/{launch['executionId']}"
    assert re.fullmatch(r"[a-z]+-[a-z]+", job["session"]), job["session"]
    assert re.fullmatch(
        rf"/products/v2/{pipeline['uuid'].replace('-', '')}/[0-9a-f]{{32}}/[0-9a-f]{{32}}/"
        rf"{job['session']}-\d{{8}}T\d{{6}}Z",
        job["archive_path"],
    ), job["archive_path"]
    assert job["generated_by"] == [pipeline["uuid"]]
    assert job["child_of"] == ["sample.tacc.abcde"]
    assert job["pipeline_uuid"] == pipeline["uuid"]
    assert job["data"] == json.loads(SEED_LAUNCH)["job_definition"]
    # Its input is on data.tacc.cloud, which this deployment does not catalog.
    assert job["derived_from"] == job["acted_on"] == job["acted_using"] == []
