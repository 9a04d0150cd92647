"""Typed UUIDs: UUID5 whose first three hex digits say what kind of record it names.

A typed UUID is ``uuid5(namespace, text)`` with its first three hex digits replaced
by the type's prefix (106 pipeline, 107 pipelinejob, ...). The namespace is
``uuid3(NAMESPACE_DNS, domain)`` for a configurable domain, so two deployments with
different domains never mint the same identifiers for the same content.

Identity is derived from content, never from time: the same pipeline components,
or the same pipeline + linkage + data for a job, always give the same UUID, which is
how a resubmission is recognised instead of duplicated.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from functools import cache
from typing import Any

from pipelinejobs.errors import UnknownIdentifierType

#: The type table of the original catalog (prefix -> (type name, title)).
UUID_TYPES: dict[str, tuple[str, str]] = {
    "100": ("generic", "Generic Data Catalog Record"),
    "101": ("challenge_problem", "Challenge Problem"),
    "102": ("experiment", "Experiment"),
    "103": ("sample", "Sample"),
    "104": ("measurement", "Measurement"),
    "105": ("file", "File Metadata"),
    "106": ("pipeline", "Pipeline"),
    "107": ("pipelinejob", "PipelineJob"),
    "108": ("pipelinejob_event", "PipelineJob Event"),
    "109": ("reference", "Named Reference File or URI"),
    "110": ("product", "Output from a PipelineJob"),
    "111": ("upload", "Uploaded File"),
    "114": ("experiment_design", "Experiment Design or Request"),
    "115": ("input_classifier", "Input File Classifier"),
    "116": ("fixity", "File Fixity"),
    "117": ("process", "Named Computational Process"),
    "118": ("annotation", "User-contributed Free-text Annotation"),
    "119": ("inline_annotation", "Machine-generated Free-text Annotation"),
    "120": ("query", "Redash Query"),
    "121": ("dashboard", "Redash Dashboard"),
    "122": ("tag_annotation", "Tag Annotation"),
    "123": ("text_annotation", "Text Annotation"),
    "124": ("association", "Annotation Association"),
    "125": ("structured_request", "Structured Experiment Request"),
    # Not in the original catalog's table (issue 15): a run, a named batch of jobs.
    "126": ("pipelinejob_run", "PipelineJob Run"),
}
PREFIXES: dict[str, str] = {name: prefix for prefix, (name, _) in UUID_TYPES.items()}

_UUID_RE = re.compile(
    r"^(?:uri:urn:)?([0-9a-f]{3})[0-9a-f]{5}-[0-9a-f]{4}-[0-9a-f]{4}-"
    r"[0-9a-f]{4}-[0-9a-f]{12}$"
)


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace: equal documents give equal text (and UUIDs)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@cache
def namespace(domain: str) -> uuid.UUID:
    """The UUID5 namespace for ``domain``."""
    return uuid.uuid3(uuid.NAMESPACE_DNS, domain)


@dataclass(frozen=True)
class Identifiers:
    """Mints typed UUIDs in one deployment's namespace."""

    domain: str = "sd2e.org"

    def typed(self, text: str, kind: str) -> str:
        """The typed UUID of ``text`` for record type ``kind`` (e.g. ``pipelinejob``)."""
        try:
            prefix = PREFIXES[kind]
        except KeyError:
            raise UnknownIdentifierType(
                f"unknown identifier type {kind!r}; known: {', '.join(sorted(PREFIXES))}", kind=kind
            ) from None
        raw = uuid.uuid5(namespace(self.domain), text)
        return str(uuid.UUID(prefix + raw.hex[3:]))

    def pipeline(self, components: list[Any]) -> str:
        """Pipeline UUID: from the canonical JSON of ``components`` only.

        Name, description and file types are deliberately left out, so they can be
        edited without making a new pipeline.
        """
        return self.typed(canonical_json(components), "pipeline")

    def job(self, pipeline_uuid: str, linkage: list[str], data: dict[str, Any] | None) -> str:
        """Job UUID: pipeline + sorted linkage ids + canonical data.

        Submitting the same job twice yields the same UUID, so it is reported, not
        duplicated. Linkage order does not matter; duplicates in it do not either.
        """
        body = canonical_json([pipeline_uuid, sorted(set(linkage)), data or {}])
        return self.typed(body, "pipelinejob")

    def event(self, job_uuid: str, delivery_id: str | None = None) -> str:
        """History event UUID (type 108).

        With a delivery id it is deterministic, which is what makes a redelivered
        message recognisable in the history; without one it is unique.
        """
        seed = delivery_id if delivery_id is not None else uuid.uuid4().hex
        return self.typed(f"{job_uuid}:{seed}", "pipelinejob_event")

    def run(self, pipeline_uuid: str, name: str) -> str:
        """Run UUID (type 126): pipeline + name. Creating the same run twice finds it,
        as a resubmitted job is found; a run's other fields may differ and are not
        changed by the second creation."""
        return self.typed(canonical_json([pipeline_uuid, name]), "pipelinejob_run")

    def file(self, storage_system: str, path: str) -> str:
        """File UUID (type 105) from the storage system and the file's path."""
        return self.typed(f"{storage_system}:{path}", "file")


def uuid_type(value: str) -> str:
    """The record type a typed UUID names (``'pipelinejob'`` for ``107...``)."""
    match = _UUID_RE.match(str(value).lower())
    if not match:
        raise UnknownIdentifierType(f"{value!r} is not a typed UUID", value=str(value))
    prefix = match.group(1)
    if prefix not in UUID_TYPES:
        raise UnknownIdentifierType(
            f"{value!r} has prefix {prefix}, which is not a known type",
            value=str(value),
            prefix=prefix,
        )
    return UUID_TYPES[prefix][0]


def require_type(value: str, kind: str) -> str:
    """Return ``value`` if it is a typed UUID of ``kind``, else raise naming both."""
    found = uuid_type(value)
    if found != kind:
        raise UnknownIdentifierType(
            f"{value} is a {found} UUID (prefix {PREFIXES[found]}), expected a {kind} UUID "
            f"(prefix {PREFIXES[kind]})",
            value=value,
            expected=kind,
            found=found,
        )
    return value
