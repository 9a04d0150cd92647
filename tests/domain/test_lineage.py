"""Lineage walks: a chain of two jobs (B's input is a file of A), bounds, refusals.

The chain is made through the actors, as it would be made for real: A and B created
by create messages, their outputs written and indexed by the jobs-indexer, and B
naming A's file in ``derived_from``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from pipelinejobs.adapters.store.base import Document
from pipelinejobs.domain.lineage import Lineage
from pipelinejobs.errors import NotFound, UnknownIdentifierType, ValidationError
from pipelinejobs.runtime.dispatch import Runtime
from tests.support import stub

SAMPLE_A, SAMPLE_B = "sample.tacc.a1", "sample.tacc.b2"


def done(rt: Runtime, alias: str, message: Any) -> dict[str, Any]:
    execution = rt.submit(alias, message)
    stub(rt).join()
    execution = rt.executions.get(execution["id"])
    assert execution["status"] == "COMPLETE", execution["error"]
    return dict(execution["result"])


def pipeline(rt: Runtime, app: str) -> str:
    definition = {"name": app, "components": [{"id": app, "inputs": {}, "parameters": {}}]}
    return str(done(rt, "pipelines-manager", definition)["uuid"])


def finished_job(
    rt: Runtime, pipeline_uuid: str, sample: str, files: dict[str, bytes], **create: Any
) -> tuple[dict[str, Any], list[Document]]:
    """A job created, run, finished and indexed with ``files`` in its archive path."""
    job = done(
        rt,
        "launcher-proxy",
        {
            "action": "create",
            "pipeline_uuid": pipeline_uuid,
            "parameters": {"sample_id": sample},
            **create,
        },
    )
    for relative, content in files.items():
        rt.storage.write(job["archive_path"], relative, content)
    for name in ("run", "finish"):
        done(rt, "jobs-manager", {"uuid": job["uuid"], "name": name, "token": job["token"]})
    stored = rt.store.find("files", {"job_uuid": job["uuid"]}, order="path").items
    assert len(stored) == len(files)
    return job, stored


@dataclass
class Chain:
    pipeline_a: str
    pipeline_b: str
    a: dict[str, Any]
    a_files: list[Document]
    b: dict[str, Any]
    b_files: list[Document]


@pytest.fixture
def chain(runtime: Runtime) -> Chain:
    pa, pb = pipeline(runtime, "step-a"), pipeline(runtime, "step-b")
    a, a_files = finished_job(runtime, pa, SAMPLE_A, {"reads.csv": b"1\n", "log.txt": b"ok"})
    b, b_files = finished_job(
        runtime, pb, SAMPLE_B, {"plot.png": b"png"}, derived_from=[a_files[1]["uuid"]]
    )
    return Chain(pa, pb, a, a_files, b, b_files)


def ids(graph: dict[str, Any], kind: str | None = None) -> set[str]:
    return {n["id"] for n in graph["nodes"] if kind is None or n["kind"] == kind}


def edges(graph: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(e["from"], e["type"], e["to"]) for e in graph["edges"]}


def test_up_from_b_s_file_reaches_a_its_pipeline_and_its_linkage(
    runtime: Runtime, chain: Chain
) -> None:
    start = chain.b_files[0]["uuid"]
    graph = Lineage(runtime.store).of_file(start, "up", 4)
    assert graph["root"] == {"id": start, "kind": "file"}
    a_file = chain.a_files[1]["uuid"]
    assert {
        (start, "generated_by", chain.b["uuid"]),
        (chain.b["uuid"], "generated_by", chain.pipeline_b),
        (chain.b["uuid"], "child_of", SAMPLE_B),
        (chain.b["uuid"], "derived_from", a_file),
        (a_file, "generated_by", chain.a["uuid"]),
        (chain.a["uuid"], "generated_by", chain.pipeline_a),
        (chain.a["uuid"], "child_of", SAMPLE_A),
    } <= edges(graph)
    assert {chain.a["uuid"], chain.b["uuid"]} == ids(graph, "job")
    assert {chain.pipeline_a, chain.pipeline_b} == ids(graph, "pipeline")
    assert {SAMPLE_A, SAMPLE_B} == ids(graph, "linkage")
    node_a = next(n for n in graph["nodes"] if n["id"] == chain.a["uuid"])
    assert node_a == {
        "id": chain.a["uuid"],
        "kind": "job",
        "state": "FINISHED",
        "pipeline_uuid": chain.pipeline_a,
        "session": chain.a["session"],
        "archive_path": chain.a["archive_path"],
        "created": runtime.jobs.get(chain.a["uuid"])["created"],
        "depth": 3,
        "direction": "up",
    }
    assert graph["truncated"] is False and graph["reasons"] == []
    # A's other file is not an ancestor of B's.
    assert chain.a_files[0]["uuid"] not in ids(graph)


def test_down_from_a_reaches_b_s_files(runtime: Runtime, chain: Chain) -> None:
    graph = Lineage(runtime.store).of_job(chain.a["uuid"], "down", 3)
    a_file = chain.a_files[1]["uuid"]
    assert {f["uuid"] for f in chain.b_files} <= ids(graph, "file")
    assert {
        (a_file, "generated_by", chain.a["uuid"]),
        (chain.b["uuid"], "derived_from", a_file),
        (chain.b_files[0]["uuid"], "generated_by", chain.b["uuid"]),
    } <= edges(graph)
    assert ids(graph, "pipeline") == ids(graph, "linkage") == set()  # down never goes up
    assert all(n["direction"] == "down" for n in graph["nodes"] if n["depth"])


def test_both_ways_from_the_middle(runtime: Runtime, chain: Chain) -> None:
    graph = Lineage(runtime.store).of_job(chain.b["uuid"])
    assert graph["direction"] == "both" and graph["depth"] == 3
    assert chain.a["uuid"] in ids(graph) and chain.b_files[0]["uuid"] in ids(graph)
    sides = {n["id"]: n.get("direction") for n in graph["nodes"]}
    assert sides[chain.a["uuid"]] == "up" and sides[chain.b_files[0]["uuid"]] == "down"
    assert sides[chain.b["uuid"]] is None  # the root


def test_depth_bounds_the_walk_and_says_so(runtime: Runtime, chain: Chain) -> None:
    graph = Lineage(runtime.store).of_file(chain.b_files[0]["uuid"], "up", 1)
    assert ids(graph) == {chain.b_files[0]["uuid"], chain.b["uuid"], SAMPLE_B}
    assert graph["truncated"] is True
    assert graph["reasons"] == ["depth 1 reached: nodes marked more have neighbours further up"]
    marked = {n["id"] for n in graph["nodes"] if n.get("more")}
    assert marked == {chain.b["uuid"]}  # the linkage id has nothing above it


def test_the_node_limit_bounds_the_walk_and_says_so(runtime: Runtime) -> None:
    p = pipeline(runtime, "wide")
    files = {f"out/{i:02d}.csv": b"x" for i in range(12)}
    job, _ = finished_job(runtime, p, SAMPLE_A, files)
    graph = Lineage(runtime.store, max_nodes=5).of_job(job["uuid"], "down", 2)
    assert len(graph["nodes"]) == 5
    assert graph["truncated"] is True
    assert graph["reasons"] == ["node limit 5 reached: nodes marked more have neighbours left out"]
    assert next(n for n in graph["nodes"] if n["id"] == job["uuid"])["more"] is True
    assert graph["limits"] == {"max_depth": 10, "max_nodes": 5}


def test_what_a_job_names_but_this_store_lacks_is_shown_as_such(runtime: Runtime) -> None:
    p = pipeline(runtime, "refs")
    job = done(
        runtime,
        "launcher-proxy",
        {"action": "create", "pipeline_uuid": p, "parameters": {"sample_id": SAMPLE_A}},
    )
    experiment = "1022efa3-4480-538f-a581-f1810fb4e0c3"  # the seed's derived_from
    gone = "1071269f-b251-5a5f-bec1-6d7f77131f3f"
    stored = runtime.jobs.get(job["uuid"])
    runtime.store.update(
        "jobs", job["uuid"], version=stored["version"], set={"derived_from": [experiment, gone]}
    )
    nodes = {n["id"]: n for n in Lineage(runtime.store).of_job(job["uuid"], "up", 2)["nodes"]}
    assert nodes[experiment] == {
        "id": experiment,
        "kind": "reference",
        "type": "experiment",
        "depth": 1,
        "direction": "up",
    }
    assert nodes[gone] == {
        "id": gone,
        "kind": "job",
        "missing": True,
        "depth": 1,
        "direction": "up",
    }


@pytest.mark.parametrize(
    ("direction", "depth", "path", "message"),
    [
        ("sideways", 3, "direction", "direction must be one of up, down, both, not 'sideways'"),
        ("up", 0, "depth", "depth must be 1 to 10, not 0"),
        ("up", 11, "depth", "depth must be 1 to 10, not 11"),
    ],
)
def test_a_walk_it_does_not_take_is_refused(
    runtime: Runtime, chain: Chain, direction: str, depth: int, path: str, message: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        Lineage(runtime.store).of_job(chain.a["uuid"], direction, depth)
    assert caught.value.message == message and caught.value.detail["path"] == path


def test_an_unknown_job_or_file_is_not_found(runtime: Runtime) -> None:
    job, file = "1071269f-b251-5a5f-bec1-6d7f77131f3f", "1059a8c1-0000-5000-8000-000000000000"
    with pytest.raises(NotFound, match=f"^no job {job}$"):
        Lineage(runtime.store).of_job(job)
    with pytest.raises(NotFound, match=f"^no file {file}$"):
        Lineage(runtime.store).of_file(file)
    with pytest.raises(UnknownIdentifierType):
        Lineage(runtime.store).of_job(file)
