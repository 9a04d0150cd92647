"""Pipelines in the store: registered once, identified by their components.

A pipeline's UUID is derived from its ``components`` alone, so registering the same
components again finds the existing pipeline, and the components can never change
(a different list *is* a different pipeline). Name, description, processing levels
and file types can be updated with the pipeline's update token. A pipeline can be
disabled (and enabled again) or retired for good; neither accepts new jobs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipelinejobs.adapters.store.base import Document, Store, not_found
from pipelinejobs.adapters.store.cas import DEFAULT_RETRIES, Change, compare_and_set
from pipelinejobs.domain import validation
from pipelinejobs.domain.clock import Clock, now, system_clock
from pipelinejobs.domain.identifiers import Identifiers, canonical_json, require_type
from pipelinejobs.errors import (
    Conflict,
    DuplicateDocument,
    ImmutableField,
    NotFound,
)

ACTIVE, DISABLED, RETIRED = "active", "disabled", "retired"
#: action -> (statuses it applies to, resulting status)
STATUS_ACTIONS: dict[str, tuple[tuple[str, ...], str]] = {
    "disable": ((ACTIVE, DISABLED), DISABLED),
    "enable": ((ACTIVE, DISABLED), ACTIVE),
    "retire": ((ACTIVE, DISABLED, RETIRED), RETIRED),
}
#: Fields of a pipeline definition that an update may change.
MUTABLE = (
    "name",
    "description",
    "processing_levels",
    "accepts",
    "produces",
    "collections_levels",
    "pipeline_type",
    "__options",
)

Check = Callable[[Document], None]


@dataclass(frozen=True)
class PipelineResult:
    pipeline: Document
    #: True when this call created it (or changed it); False when it already was so.
    changed: bool


def component_ids(components: list[Any]) -> list[str]:
    """The ids of a pipeline's app, actor and command components (how a launch names
    it, and which of them it runs)."""
    out = []
    for c in components:
        if isinstance(c, Mapping) and isinstance(c.get("id"), str):
            out.append(c["id"])
    return sorted(set(out))


class Pipelines:
    """Create, read, update and retire pipelines."""

    collection = "pipelines"

    def __init__(
        self,
        store: Store,
        identifiers: Identifiers | None = None,
        *,
        clock: Clock = system_clock,
        retries: int = DEFAULT_RETRIES,
    ) -> None:
        self.store = store
        self.ids = identifiers or Identifiers()
        self.clock = clock
        #: Compare-and-set budget (``store.cas_retries``), shared with every other loop.
        self.retries = retries

    def uuid_for(self, definition: Mapping[str, Any]) -> str:
        return self.ids.pipeline(list(definition.get("components") or []))

    def create(self, definition: Mapping[str, Any], *, task: str | None = None) -> PipelineResult:
        """Register ``definition`` (a ``pipeline_manager_create`` document).

        ``task`` names the execution registering it and is stored, so that a
        redelivery of that execution can tell its own earlier insert from someone
        else's registration of the same components.
        """
        validation.validate("pipeline_manager_create", dict(definition))
        uuid = self.uuid_for(definition)
        date = now(self.clock)
        doc: Document = {k: v for k, v in definition.items() if k in MUTABLE}
        doc.update(
            {
                "uuid": uuid,
                "name": definition["name"],
                "components": list(definition["components"]),
                "component_ids": component_ids(list(definition["components"])),
                "status": ACTIVE,
                "created": date,
                "updated": date,
                "version": 0,
                "token_rotation": 0,
            }
        )
        if task is not None:
            doc["task"] = task
        validation.validate("pipeline", doc)
        try:
            return PipelineResult(self.store.insert(self.collection, doc), True)
        except DuplicateDocument:
            return PipelineResult(self.get(uuid), False)

    def get(self, uuid: str) -> Document:
        require_type(uuid, "pipeline")
        doc = self.store.get(self.collection, uuid)
        if doc is None:
            raise not_found(self.store, self.collection, uuid, f"no pipeline {uuid}", uuid=uuid)
        return doc

    def _write(
        self, uuid: str, change: Callable[[Document], dict[str, Any] | None], check: Check | None
    ) -> PipelineResult:
        """Apply ``change`` (the fields to set, or None) by compare-and-set, after
        ``check`` (the caller's right to change it); both see the version the write
        replaces, so a lost race checks and decides again."""
        wrote = False

        def decide(doc: Document) -> Change | None:
            nonlocal wrote
            if check is not None:
                check(doc)
            fields = change(doc)
            wrote = bool(fields)
            return Change(set={**fields, "updated": now(self.clock)}) if fields else None

        doc = compare_and_set(
            self.store,
            self.collection,
            uuid,
            decide,
            retries=self.retries,
            current=self.get(uuid),
            what=f"pipeline {uuid}",
        )
        return PipelineResult(doc, wrote)

    def update(
        self, uuid: str, definition: Mapping[str, Any], *, check: Check | None = None
    ) -> PipelineResult:
        """Change the mutable fields of ``uuid`` to those in ``definition``.

        ``definition`` may carry ``components``; if they differ from the stored
        ones the update is refused: components are immutable.
        """
        unknown = sorted(set(definition) - set(MUTABLE) - {"components"})
        if unknown:
            raise ImmutableField(
                f"pipeline fields {unknown} cannot be updated; updatable: {', '.join(MUTABLE)}",
                path=unknown[0],
            )

        def change(doc: Document) -> dict[str, Any] | None:
            if "components" in definition and (
                canonical_json(definition["components"]) != canonical_json(doc["components"])
            ):
                raise ImmutableField(
                    f"components are immutable: pipeline {uuid} keeps its components; "
                    f"register a new pipeline for different ones",
                    uuid=uuid,
                    path="components",
                )
            fields = {
                k: definition[k] for k in MUTABLE if k in definition and doc.get(k) != definition[k]
            }
            candidate = {**doc, **fields}
            validation.validate("pipeline", candidate)
            return fields or None

        return self._write(uuid, change, check)

    def set_status(self, uuid: str, action: str, *, check: Check | None = None) -> PipelineResult:
        """Apply ``disable``, ``enable`` or ``retire``."""
        sources, target = STATUS_ACTIONS[action]

        def change(doc: Document) -> dict[str, Any] | None:
            if doc["status"] not in sources:
                raise Conflict(
                    f"pipeline {uuid} is {doc['status']}; '{action}' applies to "
                    f"{' or '.join(sources)} pipelines",
                    uuid=uuid,
                    state=doc["status"],
                    allowed=list(sources),
                )
            return {"status": target} if doc["status"] != target else None

        return self._write(uuid, change, check)

    def rotate_token(self, uuid: str, *, check: Check | None = None) -> PipelineResult:
        """Invalidate the current update token (admin action)."""
        return self._write(
            uuid, lambda d: {"token_rotation": int(d.get("token_rotation", 0)) + 1}, check
        )

    def resolve(self, *, uuid: str | None = None, app_id: str | None = None) -> Document:
        """The pipeline a launch names, by UUID or by one of its components' ids."""
        if uuid:
            return self.get(uuid)
        if not app_id:
            raise NotFound(
                "a launch must name its pipeline by pipeline_uuid or by the job_definition's appId"
            )
        found = self.store.find(self.collection, {"component_ids": app_id}, limit=2).items
        if not found:
            raise NotFound(
                f"no pipeline has a component with id {app_id!r}; register one "
                f"with the pipelines-manager first",
                app_id=app_id,
            )
        if len(found) > 1:
            raise Conflict(
                f"several pipelines have a component {app_id!r}; name the "
                f"pipeline by pipeline_uuid",
                app_id=app_id,
            )
        return found[0]

    def require_active(self, pipeline: Document) -> None:
        if pipeline["status"] != ACTIVE:
            raise Conflict(
                f"pipeline {pipeline['uuid']} is {pipeline['status']} and accepts no new jobs",
                uuid=pipeline["uuid"],
                state=pipeline["status"],
            )
