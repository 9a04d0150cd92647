"""The lifecycle diagram, drawn from the lifecycle table the code runs on.

Nothing here names a state or an event: :func:`graph` reads
:data:`pipelinejobs.domain.lifecycle.TABLE` and :func:`layout` places it, so a row
added to the table is a box or an arrow in the console the next time it starts.
The table becomes a graph in four kinds of marks:

* an **arrow** per (source, destination) pair, labelled with every event that makes
  that move (``finish`` from CREATED and from RUNNING are two arrows);
* a **loop** over a state for the events that leave it where it is (``run`` on
  RUNNING, ``finish``/``indexed`` on FINISHED);
* an event allowed from (nearly) every state (``reset``) is one arrow from an "any
  state" mark instead of ten; the states it is not allowed from are named;
* events that never change the state (``update``, ``resource``) are a note under the
  diagram, with the states they are refused in.

The layout is a small layered (Sugiyama-style) one: states get columns by the
longest path from job creation once the edges that go back (``indexed`` from
INDEXING to FINISHED) are turned round; arrows spanning several columns pass through
invisible waypoints; the order within each column is chosen by barycentre sweeps to
keep crossings few. It is computed once per process (:func:`layout` is cached), and
each job's drawing only adds classes: the states and moves its history took
(``taken``), and the state it is in (``current``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

from markupsafe import Markup, escape

from pipelinejobs.domain import lifecycle
from pipelinejobs.domain.lifecycle import UNCHANGED

#: The mark an event that creates a job starts from, and the "any state" mark.
START, ANY = "(new)", "(any state)"
#: Geometry (SVG user units).
COLUMN, ROW = 150, 64
BOX_W, BOX_H = 100, 30
MARGIN_X, MARGIN_Y = 24, 46
#: An event allowed from all but this many states is drawn from "any state".
ANY_SLACK = 1


@dataclass(frozen=True)
class Arrow:
    """One move of the table: ``source`` to ``target`` on any of ``events``."""

    source: str
    target: str
    events: tuple[str, ...]


@dataclass
class Graph:
    """The lifecycle table as marks (see the module docstring)."""

    states: list[str]
    arrows: list[Arrow] = field(default_factory=list)
    #: state -> events that loop on it
    loops: dict[str, list[str]] = field(default_factory=dict)
    #: (events, the states they are refused in) for events that never change the state
    notes: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    #: events drawn from "any state": event -> the states it is refused in
    anywhere: dict[str, tuple[str, ...]] = field(default_factory=dict)


def label(event: str) -> str:
    """An event's name as drawn (admin-only events are dashed arrows instead)."""
    return event


def graph(table: Sequence[tuple[object, Sequence[object], object]] = lifecycle.TABLE) -> Graph:
    """Read the lifecycle table into marks."""
    states = [str(s) for s in lifecycle.ALL_STATES]
    g = Graph(states)
    moves: dict[tuple[str, str], list[str]] = {}
    notes: dict[tuple[str, ...], list[str]] = {}
    for event_, sources_, dest_ in table:
        event, dest = str(event_), str(dest_)
        sources = [str(s) for s in sources_]
        refused = tuple(s for s in states if s not in sources)
        if not sources:
            moves.setdefault((START, dest), []).append(event)
        elif dest == UNCHANGED:
            notes.setdefault(refused, []).append(event)
        elif len(refused) <= ANY_SLACK:
            g.anywhere[event] = refused
            moves.setdefault((ANY, dest), []).append(event)
        else:
            for source in sources:
                if source == dest:
                    g.loops.setdefault(dest, []).append(event)
                else:
                    moves.setdefault((source, dest), []).append(event)
    g.arrows = [Arrow(s, t, tuple(e)) for (s, t), e in moves.items()]
    g.notes = [(", ".join(label(e) for e in events), refused) for refused, events in notes.items()]
    return g


# -- layout -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Point:
    x: float
    y: float


@dataclass
class Layout:
    """Where everything goes: node centres, each arrow's waypoints, the size."""

    graph: Graph
    nodes: dict[str, Point]
    #: arrow -> points from the source's edge to the target's, through waypoints
    routes: dict[Arrow, list[Point]]
    #: arrows drawn against the columns' direction (from a later column to an earlier)
    backward: set[Arrow]
    width: float
    height: float


def _columns(names: list[str], arrows: list[Arrow]) -> tuple[dict[str, int], set[Arrow]]:
    """Column of every node by longest path, after turning back the arrows that close
    a cycle (found by a depth-first walk from the creation mark, in table order)."""
    out: dict[str, list[str]] = {n: [] for n in names}
    for a in arrows:
        out[a.source].append(a.target)
    backward: set[tuple[str, str]] = set()
    state: dict[str, int] = {}  # 1 on the walk's path, 2 done

    def walk(node: str) -> None:
        state[node] = 1
        for nxt in out[node]:
            if state.get(nxt) == 1:
                backward.add((node, nxt))
            elif nxt not in state:
                walk(nxt)
        state[node] = 2

    for root in names:
        if root not in state:
            walk(root)
    forward: dict[str, list[str]] = {n: [] for n in names}
    for a in arrows:
        s, t = (a.target, a.source) if (a.source, a.target) in backward else (a.source, a.target)
        forward[s].append(t)
    column: dict[str, int] = {}

    def depth(node: str) -> int:
        if node not in column:
            preds = [s for s in names if node in forward[s]]
            column[node] = 1 + max((depth(p) for p in preds), default=-1)
        return column[node]

    for n in names:
        depth(n)
    # A mark with no arrow in (the creation mark, "any state") sits just before the
    # first node it points to, not at the far left.
    for n in names:
        if not any(n in forward[s] for s in names) and forward[n]:
            column[n] = min(column[t] for t in forward[n]) - 1
    low = min(column.values())
    column = {n: c - low for n, c in column.items()}
    flipped = {a for a in arrows if (a.source, a.target) in backward}
    return column, flipped


def _crossings(order: list[list[str]], links: list[tuple[str, str]]) -> int:
    position = {n: i for layer in order for i, n in enumerate(layer)}
    layer_of = {n: k for k, layer in enumerate(order) for n in layer}
    count = 0
    by_layer: dict[int, list[tuple[int, int]]] = {}
    for s, t in links:
        by_layer.setdefault(layer_of[s], []).append((position[s], position[t]))
    for pairs in by_layer.values():
        for i, (a1, b1) in enumerate(pairs):
            for a2, b2 in pairs[i + 1 :]:
                if (a1 - a2) * (b1 - b2) < 0:
                    count += 1
    return count


def _order(layers: list[list[str]], links: list[tuple[str, str]], sweeps: int = 12) -> None:
    """Reorder each column by the barycentre of its neighbours, down and up, keeping
    the order with the fewest crossings (``links`` join adjacent columns)."""
    best = [list(layer) for layer in layers]
    fewest = _crossings(best, links)
    for sweep in range(sweeps):
        down = sweep % 2 == 0
        indices = range(1, len(layers)) if down else range(len(layers) - 2, -1, -1)
        for k in indices:
            ref = layers[k - 1] if down else layers[k + 1]
            pos = {n: i for i, n in enumerate(ref)}
            pairs = links if down else [(t, s) for s, t in links]
            weights: dict[str, list[int]] = {}
            for s, t in pairs:
                if s in pos:
                    weights.setdefault(t, []).append(pos[s])
            current = {n: i for i, n in enumerate(layers[k])}
            layers[k].sort(
                key=lambda n: (
                    sum(weights[n]) / len(weights[n]) if n in weights else current[n],
                    current[n],
                )
            )
        found = _crossings(layers, links)
        if found < fewest:
            best, fewest = [list(layer) for layer in layers], found
    layers[:] = best


@cache
def layout() -> Layout:
    """The lifecycle table's drawing, placed (once per process)."""
    g = graph()
    names = [START, ANY, *g.states]
    used = {a.source for a in g.arrows} | {a.target for a in g.arrows}
    names = [n for n in names if n in used or n in g.states]
    column, backward = _columns(names, g.arrows)
    width_cols = max(column.values()) + 1
    layers: list[list[str]] = [[] for _ in range(width_cols)]
    for n in names:
        layers[column[n]].append(n)
    # Waypoints: an arrow spanning several columns passes one per column between.
    chains: dict[Arrow, list[str]] = {}
    links: list[tuple[str, str]] = []
    for a in g.arrows:
        s, t = (a.target, a.source) if a in backward else (a.source, a.target)
        chain = [s]
        for k in range(column[s] + 1, column[t]):
            way = f"{s}>{t}#{k}"
            layers[k].append(way)
            chain.append(way)
        chain.append(t)
        links.extend(zip(chain, chain[1:], strict=False))
        chains[a] = chain if a not in backward else list(reversed(chain))
    _order(layers, links)
    tallest = max(len(layer) for layer in layers)
    position: dict[str, Point] = {}
    for k, layer in enumerate(layers):
        top = (tallest - len(layer)) * ROW / 2
        for i, n in enumerate(layer):
            position[n] = Point(MARGIN_X + k * COLUMN + BOX_W / 2, MARGIN_Y + top + i * ROW)
    routes = {a: [position[n] for n in chain] for a, chain in chains.items()}
    nodes = {n: position[n] for n in names}
    width = MARGIN_X * 2 + (width_cols - 1) * COLUMN + BOX_W
    height = MARGIN_Y + (tallest - 1) * ROW + BOX_H / 2 + 58 + 18 * len(g.notes)
    return Layout(g, nodes, routes, backward, width, height)


# -- drawing ----------------------------------------------------------------------------


#: A move a job made: (state before, state after, event).
Move = tuple[str, str, str]


def taken_moves(records: Iterable[Mapping[str, object]], current: str | None) -> set[Move]:
    """The moves a job's history made, from its log records: each record knows the
    state it was applied to (``previous_state``), the next record's is where it led,
    and the last one's leads to ``current``. Creation starts from ``(new)``."""
    moves: set[Move] = set()
    rows = list(records)
    for i, record in enumerate(rows):
        before = record.get("previous_state")
        after = rows[i + 1].get("previous_state") if i + 1 < len(rows) else current
        if after is None:
            continue
        moves.add((START if before is None else str(before), str(after), str(record.get("name"))))
    return moves


def _fmt(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _path(points: list[Point], backward: bool) -> tuple[str, Point]:
    """An SVG path through ``points`` (centres), leaving the first box and entering
    the last at their sides, smooth through waypoints; and where its label goes."""
    half = BOX_W / 2
    if backward:
        # Against the flow: from the bottom of the source to the bottom of the target,
        # bowing below both so it never sits on the forward arrow between them.
        s, t = points[0], points[-1]
        start = Point(s.x - half / 2, s.y + BOX_H / 2)
        end = Point(t.x + half / 2, t.y + BOX_H / 2)
        drop = max(start.y, end.y) + 34
        d = (
            f"M{_fmt(start.x)},{_fmt(start.y)} C{_fmt(start.x)},{_fmt(drop)} "
            f"{_fmt(end.x)},{_fmt(drop)} {_fmt(end.x)},{_fmt(end.y)}"
        )
        return d, Point((start.x + end.x) / 2, drop - 8)
    pts = [Point(points[0].x + half, points[0].y), *points[1:-1]]
    pts.append(Point(points[-1].x - half, points[-1].y))
    d = f"M{_fmt(pts[0].x)},{_fmt(pts[0].y)}"
    for a, b in zip(pts, pts[1:], strict=False):
        mid = (a.x + b.x) / 2
        d += f" C{_fmt(mid)},{_fmt(a.y)} {_fmt(mid)},{_fmt(b.y)} {_fmt(b.x)},{_fmt(b.y)}"
    if len(pts) > 2:
        spot = pts[len(pts) // 2]
    else:
        spot = Point((pts[0].x + pts[1].x) / 2, (pts[0].y + pts[1].y) / 2)
    return d, Point(spot.x, spot.y - 5)


def svg(
    current: str | None = None,
    taken: set[Move] | frozenset[Move] = frozenset(),
    *,
    title: str = "Job lifecycle",
) -> Markup:
    """The diagram as inline SVG (classes only: the page's stylesheet colours it, so
    it needs no inline style under the console's Content-Security-Policy).

    ``taken``: the moves to highlight (:func:`taken_moves`); ``current``: the state to
    mark. Every text is escaped, though all of it comes from the lifecycle table."""
    lay = layout()
    g = lay.graph
    visited = {s for move in taken for s in move[:2]}
    out: list[str] = [
        f'<svg class="lifecycle" viewBox="0 0 {_fmt(lay.width)} {_fmt(lay.height)}" '
        f'role="img" aria-labelledby="lifecycle-title" xmlns="http://www.w3.org/2000/svg"'
        f' data-current="{escape(current or "")}">',
        f'<title id="lifecycle-title">{escape(title)}</title>',
        "<defs>",
        '<marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" '
        'markerHeight="9" markerUnits="userSpaceOnUse" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker>',
        '<marker id="arrow-taken" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" '
        'markerHeight="9" markerUnits="userSpaceOnUse" orient="auto-start-reverse">'
        '<path d="M0,0 L10,5 L0,10 z" class="arrowhead taken"/></marker>',
        "</defs>",
    ]
    # Several arrows bringing the same events to one state (retire, fail) are
    # labelled once, beside that state, rather than once each.
    fan_in: dict[tuple[str, tuple[str, ...]], list[Arrow]] = {}
    for arrow in lay.routes:
        fan_in.setdefault((arrow.target, arrow.events), []).append(arrow)
    labelled: set[tuple[str, tuple[str, ...]]] = set()
    for arrow, points in lay.routes.items():
        was = any(
            t == arrow.target and e in arrow.events and (s == arrow.source or arrow.source == ANY)
            for s, t, e in taken
        )
        d, spot = _path(points, arrow in lay.backward)
        anchor = "middle"
        group = (arrow.target, arrow.events)
        names = ", ".join(label(e) for e in arrow.events)
        if arrow.source in (START, ANY):  # a short arrow out of a mark: label under it
            origin = lay.nodes[arrow.source]
            spot = Point(origin.x, origin.y + BOX_H / 2 + 13)
        elif len(fan_in[group]) > 2 and arrow not in lay.backward:
            target = lay.nodes[arrow.target]
            spot = Point(target.x - BOX_W / 2 - 4, target.y - BOX_H / 2 - 5)
            anchor = "end"
            if group in labelled:
                names = ""
            labelled.add(group)
        classes = ["edge"]
        if was:
            classes.append("taken")
        if set(arrow.events) <= lifecycle.ADMIN_EVENTS:
            classes.append("admin")
        marker = "arrow-taken" if was else "arrow"
        text = (
            f'<text x="{_fmt(spot.x)}" y="{_fmt(spot.y)}" text-anchor="{anchor}">'
            f"{escape(names)}</text>"
            if names
            else ""
        )
        out.append(
            f'<g class="{" ".join(classes)}" data-from="{escape(arrow.source)}" '
            f'data-to="{escape(arrow.target)}"><path d="{d}" marker-end="url(#{marker})"/>'
            f"{text}</g>"
        )
    for name, centre in lay.nodes.items():
        x, y = centre.x - BOX_W / 2, centre.y - BOX_H / 2
        loops = g.loops.get(name, [])
        if loops:
            was = any(s == t == name and e in loops for s, t, e in taken)
            cls = "loop taken" if was else "loop"
            marker = "arrow-taken" if was else "arrow"
            lx, ly = centre.x, y
            out.append(
                f'<g class="{cls}" data-state="{escape(name)}"><path d="M{_fmt(lx - 14)},'
                f"{_fmt(ly)} C{_fmt(lx - 22)},{_fmt(ly - 24)} {_fmt(lx + 22)},{_fmt(ly - 24)} "
                f'{_fmt(lx + 14)},{_fmt(ly)}" marker-end="url(#{marker})"/>'
                f'<text x="{_fmt(lx)}" y="{_fmt(ly - 22)}" text-anchor="middle">'
                f"{escape(', '.join(label(e) for e in loops))}</text></g>"
            )
        if name in (START, ANY):
            excluded = [s for e, r in g.anywhere.items() for s in r] if name == ANY else []
            text = name if not excluded else f"{name[:-1]} but {', '.join(excluded)})"
            out.append(
                f'<g class="node mark" data-state="{escape(name)}"><rect x="{_fmt(x)}" '
                f'y="{_fmt(y)}" width="{BOX_W}" height="{BOX_H}" rx="15"/>'
                f'<text x="{_fmt(centre.x)}" y="{_fmt(centre.y + 4)}" text-anchor="middle">'
                f"{escape(text)}</text></g>"
            )
            continue
        classes = ["node"]
        if name in visited:
            classes.append("visited")
        if name == current:
            classes.append("current")
        out.append(
            f'<g class="{" ".join(classes)}" data-state="{escape(name)}"><rect x="{_fmt(x)}" '
            f'y="{_fmt(y)}" width="{BOX_W}" height="{BOX_H}" rx="5"/>'
            f'<text x="{_fmt(centre.x)}" y="{_fmt(centre.y + 4)}" text-anchor="middle">'
            f"{escape(name)}</text></g>"
        )
    y = lay.height - 18 * len(g.notes) - 8
    admin = sorted(lifecycle.ADMIN_EVENTS)
    if admin:
        out.append(
            f'<text class="note" x="{MARGIN_X}" y="{_fmt(y - 18)}">dashed: '
            f"{escape(', '.join(admin))} need an admin token</text>"
        )
    for events, refused in g.notes:
        but = f" but {', '.join(refused)}" if refused else ""
        out.append(
            f'<text class="note" x="{MARGIN_X}" y="{_fmt(y)}">{escape(events)}: '
            f"from any state{escape(but)}; the state does not change</text>"
        )
        y += 18
    out.append("</svg>")
    return Markup("".join(out))
