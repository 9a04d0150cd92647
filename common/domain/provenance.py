"""What a job derives from and acts on: its links to the catalog's files and jobs.

The seed's record links a job to what it used (``derived_from``), and the original
library (``ManagedPipelineJob``) also linked it to "data files and references being
computed upon": the ``inputs`` and ``parameters`` of its data, given as ``agave://``
URIs (or bare ``/products/...``-style paths on the default storage system), resolved
to the catalog's records. Here the catalog is the ``files`` collection the indexer
writes, a file's identity being its typed 105 UUID from storage system + path
(:meth:`~pipelinejobs.domain.identifiers.Identifiers.file`), so a URI names a catalog
file when a record with that UUID exists:

* ``derived_from`` — the catalog files named in the job's ``inputs``, then any
  **parent jobs and files** its creator names (:func:`with_parents`);
* ``acted_on`` — the catalog files named in its ``inputs`` or ``parameters``,
  references excepted;
* ``acted_using`` — the references among them: catalog files under a ``reference``
  directory (the original's convention, ``/reference/``). This service keeps no
  separate references collection, so a reference that is not a catalog file (an
  ``https://`` URL) is not linked.

A name that resolves to nothing (a file elsewhere, not indexed, or not a file at all)
is simply not linked: inputs are free-form, and a link must point at a record.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pipelinejobs.adapters.store.base import In, Store
from pipelinejobs.domain.identifiers import Identifiers

#: The most names one job's data is searched for (a data document is bounded by the
#: gateway's body limit; this bounds the lookups it can cost).
MAX_NAMES = 1000
#: Names looked up per store query.
BATCH = 500
#: The directory whose files are references, not data (``.../reference/genome.fa``).
REFERENCE_DIR = "reference"


@dataclass(frozen=True)
class Links:
    """A job's provenance links, each a list of typed UUIDs without repeats."""

    derived_from: list[str] = field(default_factory=list)
    acted_on: list[str] = field(default_factory=list)
    acted_using: list[str] = field(default_factory=list)

    def fields(self) -> dict[str, list[str]]:
        """The job fields to store (every one, empty lists included: a job created
        after issue 13 always has them)."""
        return {
            "derived_from": list(self.derived_from),
            "acted_on": list(self.acted_on),
            "acted_using": list(self.acted_using),
        }


def names_in(value: Any) -> Iterator[str]:
    """The strings an ``inputs`` or ``parameters`` value holds: a string, or the strings
    in a list of them (Agave lets an input take several), or those of an object's
    values (Agave's ``inputs`` and ``parameters`` are objects)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                yield item
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from names_in(item) if not isinstance(item, Mapping) else ()


def file_location(name: str, default_system: str) -> tuple[str, str] | None:
    """(storage system, ``/a/b`` path) a name points at: ``agave://system/path``, or a
    bare absolute path on ``default_system``; None for anything else (a word, a URL
    of another scheme, a path with ``..``)."""
    if name.startswith("agave://"):
        system, _, path = name[len("agave://") :].partition("/")
        if not system:
            return None
    elif name.startswith("/"):
        system, path = default_system, name
    else:
        return None
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or any("\x00" in p for p in parts):
        return None
    return system, "/" + "/".join(parts)


def is_reference(path: str) -> bool:
    """Whether a file at ``path`` is a reference (it lies under a ``reference`` dir)."""
    return REFERENCE_DIR in path.split("/")[:-1]


def _catalogued(store: Store, uuids: list[str]) -> set[str]:
    """Which of ``uuids`` have a file record."""
    found: set[str] = set()
    for start in range(0, len(uuids), BATCH):
        chunk = uuids[start : start + BATCH]
        page = store.find("files", {"uuid": In(chunk)}, limit=len(chunk))
        found.update(str(doc["uuid"]) for doc in page.items)
    return found


def links(
    store: Store, ids: Identifiers, default_system: str, *sources: Mapping[str, Any] | None
) -> Links:
    """The links of a job whose ``inputs`` and ``parameters`` are those of ``sources``
    (its job definition and its data: the same name in both counts once). See the
    module docstring."""
    inputs: dict[str, tuple[str, bool]] = {}  # file uuid -> (path, named as an input)
    seen = 0
    for source in sources:
        if not isinstance(source, Mapping):
            continue
        for key in ("inputs", "parameters"):
            for name in names_in(source.get(key)):
                seen += 1
                if seen > MAX_NAMES:
                    break
                where = file_location(name, default_system)
                if where is None:
                    continue
                uuid = ids.file(*where)
                earlier = inputs.get(uuid)
                inputs[uuid] = (where[1], key == "inputs" or bool(earlier and earlier[1]))
    found = _catalogued(store, list(inputs))
    derived: list[str] = []
    acted_on: list[str] = []
    acted_using: list[str] = []
    for uuid, (path, is_input) in inputs.items():
        if uuid not in found:
            continue
        if is_input:
            derived.append(uuid)
        (acted_using if is_reference(path) else acted_on).append(uuid)
    return Links(derived, acted_on, acted_using)


def with_parents(found: Links, parents: Iterable[str]) -> Links:
    """``found`` with the parents its creator names added to ``derived_from``: after
    its files, in the order given, each once. Checking that each parent exists is the
    caller's (the launcher-proxy refuses an unknown one before anything is queued,
    naming its place in the message)."""
    derived = list(found.derived_from)
    derived += [p for p in dict.fromkeys(parents) if p not in derived]
    return replace(found, derived_from=derived)
