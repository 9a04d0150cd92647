"""Lineage: what a job or file came from (up), and what was made from it (down).

The links are the fields the records already carry; this module walks them as a
graph. Nodes are pipelines, jobs, files and linkage ids (the catalog ids a job or file
is ``child_of``), plus ``reference`` nodes for what a job names in ``derived_from`` or
``acted_on`` that is neither a job nor a file here (a catalog experiment's uuid, say).
Each edge is written from the record holding the field to what the field names:

============  ===========  =========================  =================================
edge          from         to                         stored as
============  ===========  =========================  =================================
generated_by  job          pipeline                   the job's ``generated_by``
generated_by  file         job                        the file's ``generated_by``
child_of      job, file    linkage id                 ``child_of``
derived_from  job          job, file or reference     the job's ``derived_from``
acted_on      job          file or reference          the job's ``acted_on``
============  ===========  =========================  =================================

**Up** follows edges forward, to what a node came from; it ends at pipelines, linkage
ids and references. **Down** follows them backward, to what was made from a node: a
job's files (``files`` by ``job_uuid``), and the jobs that derive from or acted on a
job or file (``jobs`` by ``derived_from``/``acted_on``: indexed array fields, one index
lookup each). A downward walk does not go through pipelines or linkage ids — every job
of a pipeline, or of a sample, is not the lineage of one job.

**Bounded.** ``depth`` (edges from the start) is at most :data:`MAX_DEPTH`, and a walk
keeps at most ``max_nodes`` nodes; no neighbour query reads more than the room left
plus one. When a bound leaves neighbours out, the nodes concerned say ``"more": true``
and the graph says ``"truncated": true`` and why.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from pipelinejobs.adapters.store.base import Document, Store, not_found
from pipelinejobs.domain.identifiers import require_type, uuid_type
from pipelinejobs.errors import CorruptDocument, UnknownIdentifierType, ValidationError

UP, DOWN, BOTH = "up", "down", "both"
DIRECTIONS = (UP, DOWN, BOTH)
DEFAULT_DEPTH = 3
MAX_DEPTH = 10
MAX_NODES = 500
#: The linkage kinds a readable catalog id starts with (``sample.tacc.abcde``).
LINKAGE_KINDS = ("experiment", "sample", "measurement")


@dataclass
class Graph:
    """Nodes and edges found so far, and whether a bound left some out."""

    max_nodes: int
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    edges: list[dict[str, str]] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    _seen: set[tuple[str, str, str]] = field(default_factory=set)

    @property
    def room(self) -> int:
        return self.max_nodes - len(self.nodes)

    def add_edge(self, source: str, target: str, kind: str) -> None:
        if (source, target, kind) not in self._seen:
            self._seen.add((source, target, kind))
            self.edges.append({"from": source, "to": target, "type": kind})

    def truncate(self, node: str, reason: str) -> None:
        self.nodes[node]["more"] = True
        if reason not in self.reasons:
            self.reasons.append(reason)


@dataclass(frozen=True)
class Neighbour:
    """A node next to another, the edge between them, and the record when it has one."""

    key: str
    kind: str
    edge: str
    doc: Document | None
    #: True when the record is the edge's ``from`` (a down edge: the file of a job).
    holds_edge: bool


def node_of(key: str, kind: str, doc: Document | None) -> dict[str, Any]:
    """What a node shows: its id, kind and the few fields that say what it is."""
    node: dict[str, Any] = {"id": key, "kind": kind}
    if kind in ("job", "file", "pipeline") and doc is None:
        node["missing"] = True
        return node
    if kind == "job" and doc is not None:
        for name in ("state", "pipeline_uuid", "session", "archive_path", "created"):
            if doc.get(name) is not None:
                node[name] = doc[name]
    elif kind == "file" and doc is not None:
        for name in ("name", "path", "level", "job_uuid", "present"):
            if doc.get(name) is not None:
                node[name] = doc[name]
    elif kind == "pipeline" and doc is not None:
        for name in ("name", "status"):
            if doc.get(name) is not None:
                node[name] = doc[name]
    elif kind in ("linkage", "reference"):
        node["type"] = id_type(key)
    return node


def id_type(key: str) -> str | None:
    """What a catalog id names: its typed UUID's type, or the word it starts with
    (``sample.tacc.abcde`` is a sample); None when it says neither."""
    try:
        return uuid_type(key)
    except UnknownIdentifierType:
        word = key.split(".", 1)[0]
        return word if word in LINKAGE_KINDS else None


class Lineage:
    """Walks the lineage of jobs and files in one store (see the module docstring)."""

    def __init__(self, store: Store, *, max_nodes: int = MAX_NODES) -> None:
        self.store = store
        self.max_nodes = max_nodes

    # -- entry points ---------------------------------------------------------------------

    def of_job(self, uuid: str, direction: str = BOTH, depth: int = DEFAULT_DEPTH) -> Document:
        """The lineage graph around job ``uuid`` (NotFound if there is none)."""
        require_type(uuid, "pipelinejob")
        return self._graph("job", uuid, self._record("jobs", uuid, "job"), direction, depth)

    def of_file(self, uuid: str, direction: str = BOTH, depth: int = DEFAULT_DEPTH) -> Document:
        """The lineage graph around file ``uuid`` (NotFound if there is none)."""
        require_type(uuid, "file")
        return self._graph("file", uuid, self._record("files", uuid, "file"), direction, depth)

    def _record(self, collection: str, uuid: str, label: str) -> Document:
        doc = self.store.get(collection, uuid)
        if doc is None:
            raise not_found(self.store, collection, uuid, f"no {label} {uuid}", uuid=uuid)
        return doc

    def _graph(self, kind: str, key: str, doc: Document, direction: str, depth: int) -> Document:
        check(direction, depth)
        graph = Graph(self.max_nodes)
        graph.nodes[key] = {**node_of(key, kind, doc), "depth": 0}
        for way in (UP, DOWN) if direction == BOTH else (direction,):
            self._walk(graph, Neighbour(key, kind, "", doc, False), way, depth)
        return {
            "root": {"id": key, "kind": kind},
            "direction": direction,
            "depth": depth,
            "nodes": list(graph.nodes.values()),
            "edges": graph.edges,
            "truncated": bool(graph.reasons),
            "reasons": graph.reasons,
            "limits": {"max_depth": MAX_DEPTH, "max_nodes": self.max_nodes},
        }

    # -- the walk ---------------------------------------------------------------------------

    def _walk(self, graph: Graph, start: Neighbour, way: str, depth: int) -> None:
        """Breadth first from ``start``, ``way`` (up or down), ``depth`` edges at most."""
        frontier = [start]
        for level in range(1, depth + 1):
            following: list[Neighbour] = []
            for current in frontier:
                for near in self._neighbours(current, way, graph.room + 1):
                    new = near.key not in graph.nodes
                    if new and graph.room <= 0:
                        graph.truncate(
                            current.key,
                            f"node limit {graph.max_nodes} reached: nodes marked more have "
                            f"neighbours left out",
                        )
                        break
                    if near.holds_edge:
                        graph.add_edge(near.key, current.key, near.edge)
                    else:
                        graph.add_edge(current.key, near.key, near.edge)
                    if new:
                        node = node_of(near.key, near.kind, near.doc)
                        graph.nodes[near.key] = {**node, "depth": level, "direction": way}
                        following.append(near)
            frontier = following
        for current in frontier:  # the last level: are there more beyond it?
            if current.key in graph.nodes and any(True for _ in self._neighbours(current, way, 1)):
                graph.truncate(
                    current.key,
                    f"depth {depth} reached: nodes marked more have neighbours further {way}",
                )

    def _neighbours(self, node: Neighbour, way: str, limit: int) -> Iterator[Neighbour]:
        """The nodes one edge ``way`` from ``node``; down, at most ``limit`` per query."""
        doc = node.doc
        if doc is None or node.kind not in ("job", "file"):
            return  # pipelines, linkage ids and references end a walk
        if way == UP:
            if node.kind == "job":
                for pipeline in _ids(doc.get("generated_by")) or _ids(doc.get("pipeline_uuid")):
                    yield self._resolved(pipeline, "generated_by", "pipeline")
            else:
                for job in _ids(doc.get("generated_by")) or _ids(doc.get("job_uuid")):
                    yield self._resolved(job, "generated_by", "job")
            for linked in _ids(doc.get("child_of")):
                yield Neighbour(linked, "linkage", "child_of", None, False)
            if node.kind == "job":
                for edge in ("derived_from", "acted_on"):
                    for target in _ids(doc.get(edge)):
                        yield self._resolved(target, edge)
            return
        if node.kind == "job":
            files = self.store.find("files", {"job_uuid": node.key}, order="path", limit=limit)
            for found in files.items:
                yield Neighbour(found["uuid"], "file", "generated_by", found, True)
        for edge in ("derived_from", "acted_on"):
            jobs = self.store.find("jobs", {edge: node.key}, limit=limit)
            for found in jobs.items:
                yield Neighbour(found["uuid"], "job", edge, found, True)

    def _resolved(self, key: str, edge: str, kind: str | None = None) -> Neighbour:
        """The node an id names: a job or file (with its record, or marked missing), a
        pipeline, or — for anything else — a reference."""
        key = key.removeprefix("uri:urn:")
        kind = kind or {"pipelinejob": "job", "file": "file"}.get(id_type(key) or "", "reference")
        collection = {"job": "jobs", "file": "files", "pipeline": "pipelines"}.get(kind)
        doc = None
        if collection is not None:
            try:
                doc = self.store.get(collection, key)
            except CorruptDocument:
                doc = None  # shown as missing: one unreadable record ends its branch only
        return Neighbour(key, kind, edge, doc, False)


def _ids(value: Any) -> list[str]:
    """A field's ids: a list of strings, or one string."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return []


def check(direction: str, depth: int) -> None:
    """Refuse a direction or depth the walk does not take (400 naming it)."""
    if direction not in DIRECTIONS:
        raise ValidationError(
            f"direction must be one of {', '.join(DIRECTIONS)}, not {direction!r}",
            path="direction",
            allowed=list(DIRECTIONS),
        )
    if not 1 <= depth <= MAX_DEPTH:
        raise ValidationError(
            f"depth must be 1 to {MAX_DEPTH}, not {depth}", path="depth", maximum=MAX_DEPTH
        )
