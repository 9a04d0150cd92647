"""A job's links to the catalog: derived_from, acted_on, acted_using (domain/provenance.py)."""

from __future__ import annotations

from typing import Any

import pytest

from pipelinejobs.adapters.store.memory import MemoryStore
from pipelinejobs.domain import provenance
from pipelinejobs.domain.identifiers import Identifiers
from pipelinejobs.domain.provenance import Links

SYSTEM = "data-sd2e-community"
IDS = Identifiers()
TABLE = "/products/v2/abc/def/ghi/sub/table.csv"
NOTES = "/products/v2/abc/def/ghi/notes.txt"
GENOME = "/reference/genomes/genome.fa"


@pytest.fixture
def store() -> MemoryStore:
    """A catalog of three files: an output, another output and a reference."""
    store = MemoryStore()
    for path in (TABLE, NOTES, GENOME):
        store.insert("files", {"uuid": IDS.file(SYSTEM, path), "path": path, "version": 0})
    return store


def links(store: MemoryStore, *sources: dict[str, Any] | None) -> Links:
    return provenance.links(store, IDS, SYSTEM, *sources)


@pytest.mark.parametrize(
    ("name", "found"),
    [
        (f"agave://{SYSTEM}{TABLE}", (SYSTEM, TABLE)),
        (f"agave://{SYSTEM}//products//v2/./abc/def/ghi/sub/table.csv", (SYSTEM, TABLE)),
        (TABLE, (SYSTEM, TABLE)),
        (
            "agave://data.tacc.cloud/examples/tacobot/test1.txt",
            ("data.tacc.cloud", "/examples/tacobot/test1.txt"),
        ),
        ("agave:///no/system", None),
        (f"agave://{SYSTEM}/a/../b", None),
        (f"agave://{SYSTEM}/", None),
        ("https://example.org/x", None),
        ("sample.tacc.abcde", None),
    ],
)
def test_file_location(name: str, found: tuple[str, str] | None):
    assert provenance.file_location(name, SYSTEM) == found


def test_inputs_and_parameters_resolve_to_catalog_files(store: MemoryStore):
    definition = {
        "inputs": {
            "table": f"agave://{SYSTEM}{TABLE}",
            "genome": [f"agave://{SYSTEM}{GENOME}", "agave://elsewhere/x.txt"],
        },
        "parameters": {"notes": NOTES, "threads": 4, "flag": True, "word": "salsa"},
    }

    found = links(store, definition)

    table, notes, genome = (IDS.file(SYSTEM, p) for p in (TABLE, NOTES, GENOME))
    assert found == Links(
        derived_from=[table, genome], acted_on=[table, notes], acted_using=[genome]
    )
    assert found.fields() == {
        "derived_from": [table, genome],
        "acted_on": [table, notes],
        "acted_using": [genome],
    }


def test_a_name_in_the_definition_and_the_data_counts_once(store: MemoryStore):
    table = IDS.file(SYSTEM, TABLE)
    definition = {"parameters": {"t": TABLE}}
    data = {"inputs": [f"agave://{SYSTEM}{TABLE}"]}

    found = links(store, definition, data)

    assert found == Links(derived_from=[table], acted_on=[table], acted_using=[])


def test_nothing_resolves_nothing_is_linked(store: MemoryStore):
    seed = {
        "inputs": {"file1": "agave://data.tacc.cloud/examples/tacobot/test1.txt"},
        "parameters": {"salsa": True, "avocado": False, "cheese": True},
    }

    assert links(store, seed, None, {"inputs": "not a uri"}) == Links()


def test_parents_are_added_to_derived_from_after_the_files_each_once(store: MemoryStore):
    parent = IDS.job(IDS.pipeline([{"id": "a"}]), ["sample.tacc.abcde"], {})
    table = IDS.file(SYSTEM, TABLE)

    found = provenance.with_parents(links(store, {"inputs": [TABLE]}), [parent, table, parent])

    assert found.derived_from == [table, parent]
    assert found.acted_on == [table]
