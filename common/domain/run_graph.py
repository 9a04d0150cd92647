"""A run's dependency graph (issue 16): its jobs as nodes, ``depends_on`` as edges.

What ``GET /runs/<id>/graph`` returns and the console draws: every job of the run
(oldest first, at most :data:`MAX_NODES`; ``truncated`` says when there were more)
with its state, pipeline, name and linkage, and one edge per (parent → child) with
the condition that applies to it. A parent outside the run (a job may wait for any
job) is a node too, marked ``in_run: false``, so no edge points at nothing.

Reading it costs one index range (the run's jobs, on ``(run, created)``) and one read
per parent outside the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelinejobs.adapters.store.base import Document, Store
from pipelinejobs.domain import dependencies

#: The most jobs one graph shows (a drawing of more helps nobody; the API pages jobs).
MAX_NODES = 500
#: Jobs read per store page.
PAGE = 200


def node(job: Mapping[str, Any], *, in_run: bool = True) -> dict[str, Any]:
    """A job as a node: what a person needs to tell it apart in a drawing."""
    definition = (job.get("launch") or {}).get("job_definition") or {}
    data = job.get("data") or {}
    name = definition.get("name") or data.get("name")
    return {
        "uuid": job["uuid"],
        "state": job.get("state"),
        "pipeline_uuid": job.get("pipeline_uuid"),
        "name": str(name) if name is not None else None,
        "child_of": list(job.get("child_of") or []),
        "in_run": in_run,
    }


def graph(store: Store, run: str, limit: int = MAX_NODES) -> dict[str, Any]:
    """The graph of run ``run``'s jobs (see the module docstring)."""
    jobs: list[Document] = []
    after: str | None = None
    truncated = False
    while True:
        page = store.find("jobs", {"run": run}, order="created", limit=PAGE, after=after)
        jobs.extend(page.items)
        if len(jobs) > limit:
            jobs, truncated = jobs[:limit], True
            break
        if page.next is None:
            break
        after = page.next
    nodes = {job["uuid"]: node(job) for job in jobs}
    edges = [edge for job in jobs for edge in dependencies.edges(job)]
    for edge in edges:
        parent = edge["from"]
        if parent not in nodes:
            found = store.get("jobs", parent)
            nodes[parent] = (
                node(found, in_run=False)
                if found is not None
                else {
                    "uuid": parent,
                    "state": None,
                    "pipeline_uuid": None,
                    "name": None,
                    "child_of": [],
                    "in_run": False,
                }  # fmt: skip
            )
    return {"nodes": list(nodes.values()), "edges": edges, "truncated": truncated}


def layers(graph_: Mapping[str, Any]) -> list[list[str]]:
    """The graph's node uuids in columns, each node one column right of its deepest
    parent (roots first): how the console lays it out, left to right."""
    parents: dict[str, list[str]] = {n["uuid"]: [] for n in graph_["nodes"]}
    for edge in graph_["edges"]:
        parents.setdefault(edge["to"], []).append(edge["from"])
    depth: dict[str, int] = {}

    def depth_of(uuid: str, seen: frozenset[str] = frozenset()) -> int:
        if uuid in depth:
            return depth[uuid]
        if uuid in seen:  # not possible by construction; never loop on bad data
            return 0
        above = [depth_of(p, seen | {uuid}) for p in parents.get(uuid, [])]
        depth[uuid] = 1 + max(above) if above else 0
        return depth[uuid]

    columns: list[list[str]] = []
    for uuid in parents:
        d = depth_of(uuid)
        while len(columns) <= d:
            columns.append([])
        columns[d].append(uuid)
    return columns
