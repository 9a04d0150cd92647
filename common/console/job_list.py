"""The jobs list: its filters (from the list's URL), a page of the jobs they select,
and the jobs that changed since a list last asked (what the list polls for).

The filters are the read API's (``GET /jobs``): states, pipeline, linkage, updated
since, and — issue 15 — a ``key:value`` tag, an owner (``me``: the signed-in key) and
a run; each is an indexed field, and the store intersects them. A text search looks
for its text in the uuid and name of the newest :data:`SCAN_LIMIT` jobs the others
select.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipelinejobs.adapters.store.base import Document, In, Range, Store
from pipelinejobs.console.views import PAGE, STATES, count, job_name
from pipelinejobs.domain import tags
from pipelinejobs.domain.clock import iso
from pipelinejobs.domain.identifiers import PREFIXES, uuid_type
from pipelinejobs.errors import UnknownIdentifierType, ValidationError

#: Jobs a text search looks through (the newest matching the other filters).
SCAN_LIMIT = 2000
#: The list's orders: (field, descending, label).
SORTS = {
    "newest": ("created", True, "newest first"),
    "oldest": ("created", False, "oldest first"),
    "changed": ("updated", True, "recently changed first"),
}
_UUIDISH = re.compile(r"[0-9a-f]{4}[0-9a-f-]{0,32}")


def check_uuid(value: str, kind: str, name: str, path: str = "") -> None:
    """ValidationError naming the filter ``name`` unless ``value`` is empty or a typed
    UUID of ``kind``."""
    if not value:
        return
    try:
        if uuid_type(value) == kind:
            return
    except UnknownIdentifierType:
        pass
    raise ValidationError(
        f"{name} must be a {name} UUID ({PREFIXES[kind]}...), not {value!r}", path=path or name
    )


@dataclass
class JobFilter:
    """The jobs list's filters, from its URL."""

    states: list[str] = field(default_factory=list)
    pipeline: str = ""
    linkage: str = ""
    text: str = ""
    since: str = ""  #: as typed
    sort: str = "newest"
    cursor: str = ""
    #: The API's ``/jobs`` filters of issue 15: a ``key:value`` tag, an owner (a key's
    #: listed id, ``system``, or ``me``) and a run's UUID.
    tag: str = ""
    owner: str = ""
    run: str = ""
    me: str = ""  #: whom ``owner=me`` names (the signed-in key's listed id)

    @classmethod
    def parse(cls, args: Any, me: str = "") -> JobFilter:
        """From a request's arguments; ValidationError (400) naming a bad one.
        ``me``: the owner ``owner=me`` stands for."""
        states = [s for s in args.getlist("state") if s]
        bad = [s for s in states if s not in STATES]
        if bad:
            raise ValidationError(
                f"unknown state {bad[0]!r}; states: {', '.join(STATES)}", path="state"
            )
        f = cls(
            states=list(dict.fromkeys(states)),
            pipeline=args.get("pipeline", "").strip(),
            linkage=args.get("linkage", "").strip(),
            text=args.get("q", "").strip()[:200],
            since=args.get("since", "").strip(),
            sort=args.get("sort", "newest"),
            cursor=args.get("cursor", "").strip(),
            tag=args.get("tag", "").strip(),
            owner=args.get("owner", "").strip()[:200],
            run=args.get("run", "").strip().removeprefix("uri:urn:"),
            me=me,
        )
        if f.sort not in SORTS:
            raise ValidationError(f"sort must be one of {', '.join(SORTS)}", path="sort")
        check_uuid(f.pipeline, "pipeline", "pipeline")
        check_uuid(f.run, "pipelinejob_run", "run")
        if f.tag:
            tags.parse_filter(f.tag)  # refuses a filter without its key
        f.since_stored()  # refuses a date it cannot read
        return f

    def since_stored(self) -> str | None:
        """``since`` in the stored form (a date-time with an offset, or without one:
        UTC — what the form's field says)."""
        if not self.since:
            return None
        text = self.since.upper().replace("Z", "+00:00").replace(" ", "T")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise ValidationError(
                f"updated since must be a date and time such as 2026-11-30T07:00 (UTC), "
                f"not {self.since!r}",
                path="since",
            ) from exc
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return iso(moment.timestamp())

    def where(self) -> dict[str, Any]:
        where: dict[str, Any] = {}
        if self.states:
            where["state"] = self.states[0] if len(self.states) == 1 else In(self.states)
        if self.pipeline:
            where["pipeline_uuid"] = self.pipeline
        if self.linkage:
            where["child_of"] = self.linkage
        if self.tag:
            where[tags.PAIRS] = tags.parse_filter(self.tag)
        if self.owner:
            where["owner"] = self.me if self.owner == "me" and self.me else self.owner
        if self.run:
            where["run"] = self.run
        since = self.since_stored()
        if since:
            where["updated"] = Range(gte=since)
        return where

    def order(self) -> tuple[str, bool]:
        order, descending, _ = SORTS[self.sort]
        return order, descending

    def matches_text(self, job: Mapping[str, Any]) -> bool:
        if not self.text:
            return True
        needle = self.text.lower()
        return needle in str(job.get("uuid", "")).lower() or needle in job_name(job).lower()

    def query(self, **changes: Any) -> dict[str, Any]:
        """The URL arguments of this filter (with ``changes``), for links."""
        args: dict[str, Any] = {
            "state": self.states,
            "pipeline": self.pipeline,
            "linkage": self.linkage,
            "q": self.text,
            "since": self.since,
            "sort": self.sort if self.sort != "newest" else "",
            "cursor": self.cursor,
            "tag": self.tag,
            "owner": self.owner,
            "run": self.run,
        }
        args.update(changes)
        return {k: v for k, v in args.items() if v}


@dataclass
class JobsPage:
    jobs: list[Document]
    next: str | None
    total: int | None  #: how many match (None for a text search: it is not counted)
    note: str = ""


def list_jobs(store: Store, f: JobFilter, limit: int = PAGE) -> JobsPage:
    """A page of the jobs ``f`` selects. A text search looks for the text in the
    uuid and name of the newest :data:`SCAN_LIMIT` jobs the other filters select (a
    uuid prefix is looked up by its index as well), and is not paged further."""
    where = f.where()
    order, descending = f.order()
    if not f.text:
        page = store.find(
            "jobs", where, order=order, descending=descending, limit=limit, after=f.cursor or None
        )
        total = count(store, "jobs", where)
        return JobsPage(page.items, page.next, total)
    found: dict[str, Document] = {}
    needle = f.text.lower()
    if _UUIDISH.fullmatch(needle):
        prefix = {**where, "uuid": Range(gte=needle, lt=needle + "\uffff")}
        for job in store.find(
            "jobs", prefix, order=order, descending=descending, limit=limit
        ).items:
            found[job["uuid"]] = job
    scanned, after, cut = 0, None, False
    while len(found) < limit:
        page = store.find("jobs", where, order=order, descending=descending, limit=500, after=after)
        for job in page.items:
            if f.matches_text(job):
                found.setdefault(job["uuid"], job)
        scanned += len(page.items)
        after = page.next
        if after is None:
            break
        if scanned >= SCAN_LIMIT:
            cut = True
            break
    jobs = sorted(
        found.values(), key=lambda j: (j.get(order) or "", j["uuid"]), reverse=descending
    )[:limit]
    note = (
        f"The text was looked for in the newest {scanned:,} jobs matching the other filters; "
        f"narrow them (state, pipeline, updated since) to search further back."
        if cut
        else ""
    )
    return JobsPage(jobs, None, None, note)


def changed_jobs(store: Store, f: JobFilter, since: str, limit: int = 100) -> list[Document]:
    """Jobs ``f`` selects that changed at or after ``since`` (a stored date), oldest
    change first: what a list page polls for."""
    where = f.where()
    floor = since
    current = where.get("updated")
    if isinstance(current, Range) and current.gte and current.gte > floor:
        floor = current.gte
    where["updated"] = Range(gte=floor)
    page = store.find("jobs", where, order="updated", limit=limit)
    return [j for j in page.items if f.matches_text(j)]
