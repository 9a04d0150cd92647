"""A run's dependency graph as inline SVG (issue 16), for the run page.

The graph is :func:`pipelinejobs.domain.run_graph.graph` — what ``GET
/runs/<id>/graph`` returns — laid out left to right: each job one column right of
its deepest parent (:func:`pipelinejobs.domain.run_graph.layers`), in creation order
within a column. Each job is a box coloured by its state (classes only: the console's
Content-Security-Policy allows no inline style or script) and a link to its page; each
dependency an arrow titled with its condition. Job names are user text: every text
and attribute is escaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import url_for
from markupsafe import Markup, escape

from pipelinejobs.domain import run_graph

#: Geometry (SVG user units).
COLUMN, ROW = 210, 58
BOX_W, BOX_H = 170, 40
MARGIN = 16
#: Characters of a job's name shown in its box (the full name is its tooltip).
NAME_CHARS = 24


def short(text: str, limit: int = NAME_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def positions(graph: Mapping[str, Any]) -> dict[str, tuple[float, float]]:
    """Each node's top-left corner."""
    return {
        uuid: (MARGIN + c * COLUMN, MARGIN + r * ROW)
        for c, column in enumerate(run_graph.layers(graph))
        for r, uuid in enumerate(column)
    }


def svg(graph: Mapping[str, Any], *, title: str = "Dependencies") -> Markup:
    """The graph as inline SVG (empty when no job of it waits for another)."""
    if not graph.get("edges"):
        return Markup("")
    at = positions(graph)
    width = max(x for x, _ in at.values()) + BOX_W + MARGIN
    height = max(y for _, y in at.values()) + BOX_H + MARGIN
    out = [
        f'<svg class="run-graph" viewBox="0 0 {width:g} {height:g}" role="img" '
        f'aria-labelledby="run-graph-title" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="run-graph-title">{escape(title)}</title>',
        '<defs><marker id="graph-arrow" viewBox="0 0 10 10" refX="9" refY="5" '
        'markerWidth="8" markerHeight="8" markerUnits="userSpaceOnUse" orient="auto">'
        '<path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>',
    ]
    for edge in graph["edges"]:
        (x1, y1), (x2, y2) = at[edge["from"]], at[edge["to"]]
        sx, sy, tx, ty = x1 + BOX_W, y1 + BOX_H / 2, x2, y2 + BOX_H / 2
        bend = (tx - sx) / 2
        out.append(
            f'<g class="dependency" data-from="{escape(edge["from"])}" '
            f'data-to="{escape(edge["to"])}" data-condition="{escape(edge["condition"])}">'
            f"<title>{escape(edge['condition'])}</title>"
            f'<path d="M{sx:g},{sy:g} C{sx + bend:g},{sy:g} {tx - bend:g},{ty:g} {tx:g},{ty:g}" '
            f'marker-end="url(#graph-arrow)"/></g>'
        )
    for node in graph["nodes"]:
        x, y = at[node["uuid"]]
        state = str(node.get("state") or "unknown")
        name = str(node.get("name") or node["uuid"][:13])
        classes = f"job state-{escape(state)}" + ("" if node.get("in_run") else " outside")
        href = url_for("console.job", uuid=node["uuid"])
        out.append(
            f'<a href="{escape(href)}" class="{classes}" data-uuid="{escape(node["uuid"])}" '
            f'data-state="{escape(state)}"><title>{escape(name)} ({escape(node["uuid"])})'
            f"</title>"
            f'<rect x="{x:g}" y="{y:g}" width="{BOX_W}" height="{BOX_H}" rx="5"/>'
            f'<text x="{x + 8:g}" y="{y + 16:g}" class="name">{escape(short(name))}</text>'
            f'<text x="{x + 8:g}" y="{y + 32:g}" class="state">{escape(state)}</text></a>'
        )
    out.append("</svg>")
    return Markup("".join(out))
