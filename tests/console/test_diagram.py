"""The lifecycle diagram is the lifecycle table drawn: every state, every move."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from pipelinejobs.console import diagram
from pipelinejobs.domain import lifecycle
from pipelinejobs.domain.lifecycle import UNCHANGED, Event, State

SVG = "{http://www.w3.org/2000/svg}"


def drawn(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def test_every_state_is_a_box_placed_apart() -> None:
    lay = diagram.layout()
    assert set(State) <= set(lay.nodes)
    places = {(round(p.x), round(p.y)) for p in lay.nodes.values()}
    assert len(places) == len(lay.nodes)  # no two on top of each other
    for p in lay.nodes.values():
        assert 0 < p.x < lay.width and 0 < p.y < lay.height


def test_every_move_of_the_table_is_drawn() -> None:
    g = diagram.graph()
    arrows = {(a.source, a.target, e) for a in g.arrows for e in a.events}
    loops = {(s, s, e) for s, events in g.loops.items() for e in events}
    notes = {e for events, _ in g.notes for e in events.split(", ")}
    for event, sources, dest in lifecycle.TABLE:
        if dest == UNCHANGED:
            assert event.value in notes
            continue
        if not sources:
            assert (diagram.START, dest, event.value) in arrows
            continue
        if event.value in g.anywhere:
            assert (diagram.ANY, dest, event.value) in arrows
            assert set(g.anywhere[event.value]) == set(State) - set(sources)
            continue
        for source in sources:
            assert (source.value, dest, event.value) in arrows | loops, (event, source)
    # ...and nothing that is not in the table.
    for source, target, event in arrows | loops:
        if source in (diagram.START, diagram.ANY):
            continue
        assert lifecycle.next_state(source, event) == target


def test_a_new_row_in_the_table_is_a_new_arrow() -> None:
    table = (*lifecycle.TABLE, (Event.FINALIZE, (State.REJECTED,), State.FINALIZED))
    g = diagram.graph(table)
    assert any(a.source == "REJECTED" and a.target == "FINALIZED" for a in g.arrows)


def test_a_jobs_path_and_current_state_are_marked() -> None:
    records = [
        {"name": "create", "previous_state": None},
        {"name": "run", "previous_state": "CREATED"},
        {"name": "update", "previous_state": "RUNNING"},
        {"name": "finish", "previous_state": "RUNNING"},
        {"name": "index", "previous_state": "FINISHED"},
        {"name": "indexed", "previous_state": "INDEXING"},
    ]
    taken = diagram.taken_moves(records, "FINISHED")
    assert ("RUNNING", "RUNNING", "update") in taken and (
        "INDEXING",
        "FINISHED",
        "indexed",
    ) in taken
    svg = drawn(str(diagram.svg("FINISHED", taken)))
    nodes = {
        g.get("data-state"): g.get("class") for g in svg.iter(f"{SVG}g") if g.get("data-state")
    }
    assert nodes["FINISHED"] == "node visited current"
    assert nodes["RUNNING"] == "node visited" and nodes["VALIDATED"] == "node"
    edges = {
        (g.get("data-from"), g.get("data-to")): g.get("class")
        for g in svg.iter(f"{SVG}g")
        if g.get("data-from")
    }
    assert edges[("CREATED", "RUNNING")] == "edge taken"
    assert edges[("INDEXING", "FINISHED")] == "edge taken"
    assert edges[("CREATED", "FINISHED")] == "edge"
    # An update on RUNNING is not the loop 'run' on RUNNING.
    loop = next(
        g
        for g in svg.iter(f"{SVG}g")
        if g.get("class", "").startswith("loop") and g.get("data-state") == "RUNNING"
    )
    assert loop.get("class") == "loop"


def test_the_svg_needs_no_inline_style() -> None:
    text = str(diagram.svg("RUNNING", set()))
    assert "style=" not in text and "<script" not in text
    drawn(text)  # well-formed
    assert re.search(r'marker-end="url\(#arrow\)"', text)
