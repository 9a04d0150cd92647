"""PipelineJobs Indexer: records the files a job wrote under its archive path.

From the seed: "This Reactor indexes the contents of ManagedPipelineJob archive
paths. It implements two actions: index and indexed. It is normally run
automatically via PipelineJobs Manager when a job enters the FINISHED state, but can
also be activated on its own."

An ``index`` request (JSON ``pipelinejob_index``, or URL parameters ``uuid``,
``name=index``, ``level``, ``token`` — ``filters`` only in a JSON body) moves the job
to INDEXING, lists every file under its archive path, keeps those whose path
relative to the archive path matches any filter (URL-decoded regexes; none = all),
upserts one file record per file with the processing level (default "1"), marks
records of files that vanished since the last index, and sends ``indexed`` to the
jobs-manager, which moves the job back to FINISHED.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

import re2

from common.actor import Actor, Context, Message, Params
from common.clock import iso, now
from common.errors import ValidationError
from common.store.base import Document, In

DEFAULT_LEVEL = "1"
BATCH = 500
MAX_FILTERS = 100


def compile_filters(filters: Iterable[str]) -> list[Any]:
    """URL-decode and compile with RE2 (linear time: no pattern can hang a worker)."""
    compiled = []
    for i, raw in enumerate(filters):
        pattern = unquote(raw)
        try:
            compiled.append(re2.compile(pattern))
        except re2.error as exc:
            raise ValidationError(
                f"filter {i} ({pattern!r}) is not a usable regular expression: {exc}",
                path=f"filters/{i}",
            ) from exc
    return compiled


def archive_of(ctx: Context, job: Document) -> str:
    """The job's archive path, checked to lie under the storage root."""
    archive = job.get("archive_path")
    if not archive:
        raise ValidationError(
            f"job {job['uuid']} has no archive path to index", path="archive_path"
        )
    ctx.runtime.storage.resolve(archive)
    return str(archive)


class JobsIndexer(Actor):
    alias = "jobs-indexer"
    description = "Indexes the files under a PipelineJob's archive path"
    accepts = ("pipelinejob_index", "pipelinejob_indexed")

    def parse(self, message: Any, params: Params) -> Message:
        body = dict(self.body_of(message))
        for key in ("uuid", "name", "level", "token"):
            if params.get(key) and key not in body:
                body[key] = params[key]
        if body.get("name") == "indexed":
            self.validated("pipelinejob_indexed", body)
            return Message("indexed", body, body.get("token"))
        body.setdefault("name", "index")
        self.validated("pipelinejob_index", body)
        if len(body.get("filters") or []) > MAX_FILTERS:
            raise ValidationError(
                f"at most {MAX_FILTERS} filters per index request", path="filters"
            )
        compile_filters(body.get("filters") or [])
        return Message("index", body, body.get("token"))

    def handle(self, ctx: Context, msg: Message) -> dict[str, Any]:
        uuid = msg.body["uuid"]
        tokens = ctx.runtime.tokens

        def authorize(job: Document) -> None:
            tokens.authorize(uuid, int(job.get("token_rotation", 0)), msg.token, action=msg.kind)

        if msg.kind == "indexed":
            result = ctx.runtime.jobs.apply(
                uuid, "indexed", {}, delivery_id=ctx.execution_id, check=authorize
            )
            ctx.log.info(f"Job {uuid} marked indexed; state {result.job['state']}")
            return {"uuid": uuid, "state": result.job["state"], "applied": result.applied}

        def indexable(job: Document) -> None:
            # Checked before the job moves to INDEXING: a request that can never
            # succeed must not leave the job stuck there.
            authorize(job)
            archive_of(ctx, job)

        level = msg.body.get("level") or DEFAULT_LEVEL
        filters = msg.body.get("filters") or []
        started = ctx.runtime.jobs.apply(
            uuid,
            "index",
            {"level": level, "filters": filters},
            delivery_id=ctx.execution_id,
            check=indexable,
        )
        job = started.job
        ctx.log.info(f"Indexing job {uuid} at level {level} with {len(filters)} filter(s)")
        counts = self._index(ctx, job, level, compile_filters(filters))
        ctx.log.info(
            f"Indexed {counts['indexed']} of {counts['seen']} file(s); "
            f"{counts['vanished']} no longer present"
        )
        # The job's own token, not the caller's: an admin token may expire in the queue.
        token = tokens.update_token(uuid, int(job.get("token_rotation", 0)))
        sent = ctx.send("jobs-manager", {"uuid": uuid, "name": "indexed", "token": token})
        return {"uuid": uuid, "level": level, **counts, "indexed_execution": sent}

    def _index(self, ctx: Context, job: Document, level: str, filters: list[Any]) -> dict[str, int]:
        storage, ids = ctx.runtime.storage, ctx.runtime.ids
        archive = archive_of(ctx, job)
        date = now(ctx.runtime.clock)
        seen, present, kept, batch = 0, set(), set(), []
        for entry in storage.walk(archive):
            seen += 1
            path = f"{storage.normalise(archive)}/{entry.relative}"
            file_uuid = ids.file(storage.system, path)
            present.add(file_uuid)
            if filters and not any(f.search(entry.relative) for f in filters):
                continue
            record = {
                "uuid": file_uuid,
                "name": entry.relative.rsplit("/", 1)[-1],
                "path": path,
                "relative_path": entry.relative,
                "storage_system": storage.system,
                "size": entry.size,
                "mtime": iso(entry.mtime),
                "type": mimetypes.guess_type(entry.relative)[0] or "application/octet-stream",
                "level": level,
                "generated_by": [job["uuid"]],
                "child_of": list(job.get("child_of") or []),
                "job_uuid": job["uuid"],
                "present": True,
                "created": date,
                "updated": date,
            }
            kept.add(record["uuid"])
            batch.append(record)
            if len(batch) >= BATCH:
                self._flush(ctx, batch, seen, len(kept))
        self._flush(ctx, batch, seen, len(kept))
        vanished = self._mark_vanished(ctx, job["uuid"], present, date)
        return {"seen": seen, "indexed": len(kept), "vanished": vanished}

    @staticmethod
    def _flush(ctx: Context, batch: list[Document], seen: int, indexed: int) -> None:
        """Upsert a batch, keeping each record's original ``created``; record progress
        (also after an empty last batch, so the final counts are always visible)."""
        if not batch:
            ctx.progress(files_seen=seen, files_indexed=indexed)
            return
        store = ctx.runtime.store
        keys = [r["uuid"] for r in batch]
        created = {
            d["uuid"]: d.get("created")
            for d in store.find("files", {"uuid": In(keys)}, limit=len(keys)).items
        }
        for record in batch:
            record["created"] = created.get(record["uuid"]) or record["created"]
        store.put_many("files", batch)
        batch.clear()
        ctx.progress(files_seen=seen, files_indexed=indexed)

    @staticmethod
    def _mark_vanished(ctx: Context, job_uuid: str, present: set[str], date: str) -> int:
        """Files indexed before that are gone from the archive now are marked
        ``present: false``, not silently kept. (Files that still exist but a filter
        left out this time keep their records.)"""
        store = ctx.runtime.store
        gone: list[Document] = []
        after = None
        while True:
            page = store.find(
                "files", {"job_uuid": job_uuid, "present": True}, limit=BATCH, after=after
            )
            gone.extend(
                {**d, "present": False, "updated": date}
                for d in page.items
                if d["uuid"] not in present
            )
            if page.next is None:
                break
            after = page.next
        for start in range(0, len(gone), BATCH):
            store.put_many("files", gone[start : start + BATCH])
        return len(gone)


ACTOR = JobsIndexer()
