"""``pipelinejobs lineage <uuid>``: a job's or file's lineage, printed as a tree.

Reads ``GET /jobs/<uuid>/lineage`` or ``GET /files/<uuid>/lineage`` (by the uuid's type)
and prints what the node came from under ``up`` and what was made from it under
``down``, each edge's type before the node it leads to::

    job 1073f4ff-c2b9-5190-bd9a-e6a406d9796a  FINISHED
    ├── up
    │   ├── generated_by  pipeline 106bd127-e2d2-57ac-b9be-11ed06042e68  Tacobot 9000
    │   └── child_of  linkage sample.tacc.abcde
    └── down
        └── generated_by  file 1059a8c1-...  sample.tacc.abcde/tacos.csv

A node met a second time (the graph is not always a tree) is printed with ``(above)``
and not expanded again; one a bound left unexplored ends with ``…`` and the reasons
follow the tree. ``--json`` prints the gateway's answer as it came. Anything a record
says is printed with control characters escaped, as ``jobs watch`` does.
"""

from __future__ import annotations

import argparse
from typing import Any

from pipelinejobs.cli.output import printable, show, write_json
from pipelinejobs.errors import ValidationError

__all__ = ["add_command", "cmd_lineage", "render"]

#: Where each kind of uuid's lineage is read (by its type prefix).
ROUTES = {"107": "/jobs/{}/lineage", "105": "/files/{}/lineage"}


def label(node: dict[str, Any]) -> str:
    """One node on one line: kind, id and what says most about it."""
    kind, key = node["kind"], node["id"]
    if kind == "linkage" or kind == "reference":
        text = f"{kind} {key}" + (f" ({node['type']})" if node.get("type") else "")
    else:
        detail = {
            "job": node.get("state"),
            "file": node.get("path") or node.get("name"),
            "pipeline": node.get("name"),
        }.get(kind)
        text = f"{kind} {key}" + (f"  {detail}" if detail else "")
    if node.get("missing"):
        text += "  (not found)"
    return printable(text, 160)


def render(graph: dict[str, Any]) -> list[str]:
    """The lines of ``graph`` (an API lineage answer) as a tree."""
    nodes = {n["id"]: n for n in graph["nodes"]}
    root = graph["root"]["id"]
    up: Edges = {}
    down: Edges = {}
    for edge in graph["edges"]:
        up.setdefault(edge["from"], []).append((edge["type"], edge["to"]))
        down.setdefault(edge["to"], []).append((edge["type"], edge["from"]))
    lines = [label(nodes[root])]
    ways = [w for w in ("up", "down") if graph["direction"] in (w, "both")]
    for i, way in enumerate(ways):
        last = i == len(ways) - 1
        lines.append(("└── " if last else "├── ") + way)
        tree = Tree(lines, nodes, up if way == "up" else down, way, {root})
        tree.branch(root, "    " if last else "│   ")
    if graph.get("truncated"):
        lines.extend(f"(truncated: {printable(reason, 200)})" for reason in graph["reasons"])
    return lines


Edges = dict[str, list[tuple[str, str]]]


class Tree:
    """Prints one half (up or down) of a lineage graph below its root."""

    def __init__(
        self,
        lines: list[str],
        nodes: dict[str, dict[str, Any]],
        children: Edges,
        way: str,
        seen: set[str],
    ) -> None:
        self.lines = lines
        self.nodes = nodes
        self.children = children
        self.way = way
        self.seen = seen

    def branch(self, key: str, prefix: str) -> None:
        # Only the nodes this half of the walk found (a node's "direction").
        below = [
            (edge, child)
            for edge, child in self.children.get(key, [])
            if self.nodes.get(child, {}).get("direction") == self.way
        ]
        for j, (edge, child) in enumerate(below):
            end = j == len(below) - 1
            node = self.nodes[child]
            text = f"{edge}  {label(node)}"
            if child in self.seen:
                text += "  (above)"
            elif node.get("more"):
                text += "  …"
            self.lines.append(prefix + ("└── " if end else "├── ") + text)
            if child not in self.seen:
                self.seen.add(child)
                self.branch(child, prefix + ("    " if end else "│   "))


def cmd_lineage(args: argparse.Namespace) -> int:
    """Print a job's or file's lineage as a tree (or, --json, the gateway's answer)."""
    from pipelinejobs.cli.remote import _client

    route = ROUTES.get(args.uuid[:3])
    if route is None:
        raise ValidationError(f"{args.uuid!r} is not a job (107…) or file (105…) uuid", path="uuid")
    params: dict[str, Any] = {"direction": args.direction}
    if args.depth is not None:
        params["depth"] = args.depth
    answer = _client(args).call("GET", route.format(args.uuid), params)
    if args.json:
        write_json(answer)
    else:
        show(render(answer["result"]))
    return 0


def add_command(add: Any) -> None:
    """Register ``lineage`` with the remote commands' ``add`` helper."""
    p = add("lineage", cmd_lineage, "print a job's or file's lineage (up, down) as a tree")
    p.add_argument("uuid", help="a job (107…) or file (105…) uuid")
    p.add_argument("--direction", choices=["up", "down", "both"], default="both")
    p.add_argument("--depth", type=int, default=None, help="edges from it (default 3, most 10)")
