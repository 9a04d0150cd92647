"""Pipelines in the store: registered once, identified by their components.

A pipeline's UUID is derived from its ``components`` alone, so registering the same
components again finds the existing pipeline, and the components can never change
(a different list *is* a different pipeline). Name, description, processing levels
and file types can be updated with the pipeline's update token. A pipeline can be
disabled (and enabled again) or retired for good; neither accepts new jobs.

**App ids are unique.** The seed: "the app's id must be unique not only in the Agave
Apps Catalog ... but also in the Data Catalog Pipelines collection" — a launch names
its pipeline by its ``appId``. Registering a pipeline first *claims* each of its
component ids: a document keyed by the id in the ``app_ids`` collection, inserted
(unique key, so of two registrations at once exactly one gets it, on every store),
then the pipeline is inserted. An id held by another pipeline is a 409 naming it. A
**retired** pipeline releases its ids (its claim may be taken over, by
compare-and-set): components are immutable, so registering a corrected definition
of the same app means a new pipeline, and retiring the old one must free the id; a
disabled one keeps them, as it can be enabled again. A claim whose pipeline was
never stored (its registration died in between) is taken over after
:data:`CLAIM_GRACE` seconds. Pipelines registered before claims existed hold their
ids through the same check (a lookup of ``component_ids``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pipelinejobs.adapters.store.base import Document, Store, not_found
from pipelinejobs.adapters.store.cas import DEFAULT_RETRIES, RETRY_AFTER, Change, compare_and_set
from pipelinejobs.domain import deadlines, validation
from pipelinejobs.domain.clock import Clock, now, parse, system_clock
from pipelinejobs.domain.identifiers import Identifiers, canonical_json, require_type
from pipelinejobs.errors import (
    Conflict,
    DuplicateDocument,
    ImmutableField,
    NotFound,
    PipelineJobsError,
    TooManyConflicts,
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
    # The defaults of its jobs' limits (issue 16: pipelinejobs.domain.deadlines).
    "deadline",
    "heartbeat_timeout",
)

Check = Callable[[Document], None]

#: Where the claims on component (app) ids live: ``{id, pipeline_uuid, name, created}``.
CLAIMS = "app_ids"
#: Seconds after which a claim whose pipeline was never stored may be taken over.
CLAIM_GRACE = 600.0


@dataclass(frozen=True)
class PipelineResult:
    pipeline: Document
    #: True when this call created it (or changed it); False when it already was so.
    changed: bool


def age(date: Any, clock: Clock) -> float:
    """Seconds since a stored date (infinite for one that is missing or unreadable)."""
    try:
        return clock() - parse(str(date))
    except ValueError:
        return float("inf")


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
        doc.update(deadlines.limits(definition, {}))  # kept in seconds; 0 refused by name
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
        existing = self.store.get(self.collection, uuid)
        if existing is not None:  # the same components again: nothing to claim
            return PipelineResult(existing, False)
        self.claim_app_ids(uuid, doc["name"], doc["component_ids"])
        try:
            return PipelineResult(self.store.insert(self.collection, doc), True)
        except DuplicateDocument:
            return PipelineResult(self.get(uuid), False)

    # -- app id claims ----------------------------------------------------------------------

    def holder(self, app_id: str, uuid: str) -> Document | None:
        """Who holds ``app_id`` against a pipeline ``uuid`` wanting it, without writing:
        ``{pipeline_uuid, name}`` of the other pipeline that holds it (by claim, or —
        registered before claims — by its components), or None if it is free or ours.
        A retired holder holds nothing."""
        claim = self.store.get(CLAIMS, app_id)
        if claim is not None and not self._claim_free(claim, uuid):
            return self._described(claim)
        for doc in self.store.find(self.collection, {"component_ids": app_id}, limit=20).items:
            if doc["uuid"] != uuid and doc.get("status") != RETIRED:
                return {"pipeline_uuid": doc["uuid"], "name": doc.get("name")}
        return None

    def check_app_ids(self, definition: Mapping[str, Any]) -> None:
        """Refuse (409) a definition one of whose component ids another pipeline holds;
        nothing is written (the gateway's early answer: :meth:`claim_app_ids` is the
        race-free one)."""
        uuid = self.uuid_for(definition)
        if self.store.get(self.collection, uuid) is not None:
            return
        for app_id in component_ids(list(definition.get("components") or [])):
            if not app_id:  # no launch can name an empty id: nothing to hold
                continue
            held = self.holder(app_id, uuid)
            if held is not None:
                raise self._taken(app_id, held)

    def claim_app_ids(self, uuid: str, name: str, app_ids: list[str]) -> None:
        """Make each of ``app_ids`` pipeline ``uuid``'s, or raise Conflict (409) naming
        the pipeline that holds one — releasing the claims this call made. In sorted
        order, so two registrations wanting the same ids meet on the first."""
        made: list[str] = []
        try:
            for app_id in sorted({i for i in app_ids if i}):  # "" names nothing
                if self._claim(app_id, uuid, name):
                    made.append(app_id)
        except Conflict:
            for app_id in made:  # best effort: a stale claim is taken over in time anyway
                try:
                    self.store.delete(CLAIMS, app_id)
                except PipelineJobsError:
                    break
            raise

    def _claim(self, app_id: str, uuid: str, name: str) -> bool:
        """Claim one id (True if this call wrote the claim); Conflict if held."""
        for _ in range(self.retries + 1):
            claim = self.store.get(CLAIMS, app_id)
            if claim is None:
                held = self.holder(app_id, uuid)  # a pipeline registered before claims
                if held is not None:
                    raise self._taken(app_id, held)
                doc = {
                    "id": app_id,
                    "pipeline_uuid": uuid,
                    "name": name,
                    "created": now(self.clock),
                    "version": 0,
                }
                try:
                    self.store.insert(CLAIMS, doc)
                    return True
                except DuplicateDocument:
                    continue  # another registration claimed it first: see whose it is
            if claim["pipeline_uuid"] == uuid:
                return False  # ours already: a redelivery, or the same components at once
            if not self._claim_free(claim, uuid):
                raise self._taken(app_id, self._described(claim))
            # Released (its pipeline retired, or never stored): take it over, unless
            # another registration does so first.
            taken = self.store.update(
                CLAIMS,
                app_id,
                version=claim["version"],
                set={"pipeline_uuid": uuid, "name": name, "created": now(self.clock)},
            )
            if taken is not None:
                return True
        raise TooManyConflicts(
            f"app id {app_id!r}: {self.retries} concurrent registrations won in a row",
            retry_after=RETRY_AFTER,
        )

    def _claim_free(self, claim: Document, uuid: str) -> bool:
        """Whether a claim on an id no longer holds it against pipeline ``uuid``: it is
        ``uuid``'s own, its pipeline is retired, or its pipeline was never stored and the
        claim is older than :data:`CLAIM_GRACE` s."""
        if claim.get("pipeline_uuid") == uuid:
            return True
        holder = self.store.get(self.collection, str(claim.get("pipeline_uuid")))
        if holder is not None:
            return bool(holder.get("status") == RETIRED)
        return age(claim.get("created"), self.clock) > CLAIM_GRACE

    def _described(self, claim: Document) -> Document:
        """The holder named by a claim, with its pipeline's current name when stored."""
        uuid = str(claim.get("pipeline_uuid"))
        holder = self.store.get(self.collection, uuid)
        return {"pipeline_uuid": uuid, "name": (holder or claim).get("name")}

    @staticmethod
    def _taken(app_id: str, held: Mapping[str, Any]) -> Conflict:
        return Conflict(
            f"app id {app_id!r} is already the id of a component of pipeline "
            f"{held['pipeline_uuid']} ({held.get('name')!r}): an app id must be unique "
            f"among pipelines; retire that pipeline to release it, or give this app "
            f"another id",
            app_id=app_id,
            path="components",
            held_by=held["pipeline_uuid"],
            held_by_name=held.get("name"),
        )

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
        definition = {**definition, **deadlines.limits(definition, {})}  # in seconds

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
        found = self.store.find(self.collection, {"component_ids": app_id}, limit=20).items
        if not found:
            raise NotFound(
                f"no pipeline has a component with id {app_id!r}; register one "
                f"with the pipelines-manager first",
                app_id=app_id,
            )
        if len(found) > 1:
            # A retired pipeline released the id to the one registered after it; two
            # live ones can only predate app id claims.
            found = [d for d in found if d.get("status") != RETIRED] or found[:1]
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
