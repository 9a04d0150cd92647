"""PipelineJobs Indexer: records the files a job wrote under its archive path.

From the seed: "This Reactor indexes the contents of ManagedPipelineJob archive
paths. It implements two actions: index and indexed. It is normally run
automatically via PipelineJobs Manager when a job enters the FINISHED state, but can
also be activated on its own."

An ``index`` request (JSON ``pipelinejob_index``, or URL parameters ``uuid``,
``name=index``, ``level``, ``token``, ``fixity`` — ``filters`` only in a JSON body)
moves the job to INDEXING, lists every file under its archive path, keeps those
whose path relative to the archive path matches any filter (URL-decoded regexes;
none = all), upserts one file record per file with the processing level (default
"1") and, with ``fixity``, the SHA-256 of its contents, marks records of files that
vanished since the last index, and sends ``indexed`` to the jobs-manager, which
moves the job back to FINISHED.

Built for trees of 100k files and more: the tree is streamed (``os.scandir``), never
listed whole; filters run on RE2, linear in the path's length whatever the pattern;
records are written ``indexer.batch_size`` at a time with one store read per batch
(for the ``created`` dates to keep), and the execution's progress is written once
per batch, so a client polling the execution sees the count grow.
"""

from __future__ import annotations

import mimetypes
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import re2

from pipelinejobs.adapters.storage import sha256_of
from pipelinejobs.adapters.store.base import Document, In
from pipelinejobs.config import BOOLEAN_WORDS
from pipelinejobs.domain.clock import iso, now
from pipelinejobs.errors import ValidationError
from pipelinejobs.runtime.actor import Actor, Context, Message, Params

if TYPE_CHECKING:  # pragma: no cover
    from pipelinejobs.runtime.dispatch import Runtime

DEFAULT_LEVEL = "1"


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


def flag(value: str, name: str) -> bool:
    """A boolean URL parameter (``fixity=true``); anything unclear is refused, not
    guessed, so a typo cannot silently skip the checksums someone asked for."""
    try:
        return BOOLEAN_WORDS[value.strip().lower()]
    except KeyError:
        raise ValidationError(
            f"{name} must be true or false, not {value!r}", path=name, allowed=["true", "false"]
        ) from None


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
        if params.get("fixity") and "fixity" not in body:
            body["fixity"] = flag(str(params["fixity"]), "fixity")
        self.validated("pipelinejob_index", body)
        compile_filters(body.get("filters") or [])
        return Message("index", body, body.get("token"))

    def admit(self, runtime: Runtime, msg: Message, role: str) -> None:
        """The filter limit is a setting, so it is checked here, where the runtime
        is known — still before anything is queued."""
        limit = runtime.config.indexer.max_filters
        count = len(msg.body.get("filters") or [])
        if msg.kind == "index" and count > limit:
            raise ValidationError(
                f"{count} filters given; at most {limit} per index request "
                f"(setting indexer.max_filters)",
                path="filters",
                limit=limit,
            )

    def handle(self, ctx: Context, msg: Message) -> dict[str, Any]:
        uuid = msg.body["uuid"]
        tokens = ctx.runtime.tokens

        def authorize(job: Document) -> None:
            tokens.authorize(uuid, int(job.get("token_rotation", 0)), msg.token, action=msg.kind)

        if msg.kind == "indexed":
            result = ctx.runtime.jobs.apply(
                uuid,
                "indexed",
                {},
                delivery_id=ctx.execution_id,
                sender=ctx.sender,
                check=authorize,
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
        fixity = bool(msg.body.get("fixity"))
        data: dict[str, Any] = {"level": level, "filters": filters}
        if fixity:
            data["fixity"] = True
        started = ctx.runtime.jobs.apply(
            uuid, "index", data, delivery_id=ctx.execution_id, sender=ctx.sender, check=indexable
        )
        job = started.job
        ctx.log.info(
            f"Indexing job {uuid} at level {level} with {len(filters)} filter(s)"
            + (" and checksums" if fixity else "")
        )
        counts = self._index(ctx, job, level, compile_filters(filters), fixity)
        ctx.log.info(
            f"Indexed {counts['indexed']} of {counts['seen']} file(s); "
            f"{counts['vanished']} no longer present"
        )
        # The job's own token, not the caller's: an admin token may expire in the queue.
        token = tokens.update_token(uuid, int(job.get("token_rotation", 0)))
        sent = ctx.send("jobs-manager", {"uuid": uuid, "name": "indexed", "token": token})
        return {"uuid": uuid, "level": level, "fixity": fixity, **counts, "indexed_execution": sent}

    def _index(
        self, ctx: Context, job: Document, level: str, filters: list[Any], fixity: bool
    ) -> dict[str, int]:
        """One pass over the tree. Every ``batch_size`` files seen, the records made
        so far are written in one ``put_many`` and the progress is recorded: memory
        stays bounded by the batch (plus the set of uuids seen, needed to find the
        files that vanished)."""
        storage, ids = ctx.runtime.storage, ctx.runtime.ids
        size = ctx.runtime.config.indexer.batch_size
        archive = archive_of(ctx, job)
        root = storage.normalise(archive)
        date = now(ctx.runtime.clock)
        common = {
            "storage_system": storage.system,
            "level": level,
            "job_uuid": job["uuid"],
            "present": True,
            "created": date,
            "updated": date,
        }
        linked = list(job.get("child_of") or [])
        seen = indexed = 0
        present: set[str] = set()
        batch: list[Document] = []
        for entry in storage.walk(archive):
            seen += 1
            path = f"{root}/{entry.relative}"
            file_uuid = ids.file(storage.system, path)
            present.add(file_uuid)
            if not filters or any(f.search(entry.relative) for f in filters):
                name = entry.relative.rsplit("/", 1)[-1]
                record = {
                    "uuid": file_uuid,
                    "name": name,
                    "path": path,
                    "relative_path": entry.relative,
                    "size": entry.size,
                    "mtime": iso(entry.mtime),
                    "type": mimetypes.guess_type(name)[0] or "application/octet-stream",
                    "generated_by": [job["uuid"]],
                    "child_of": list(linked),
                    **common,
                }
                if fixity and not self._checksum(ctx, record, entry.path):
                    present.discard(file_uuid)  # gone since it was listed
                else:
                    batch.append(record)
                    indexed += 1
            if seen % size == 0:
                self._flush(ctx, batch, seen, indexed)
        self._flush(ctx, batch, seen, indexed)
        vanished = self._mark_vanished(ctx, job["uuid"], present, indexed, date, size)
        return {"seen": seen, "indexed": indexed, "vanished": vanished}

    @staticmethod
    def _checksum(ctx: Context, record: Document, path: str) -> bool:
        """Add the file's SHA-256 to ``record``; False if the file vanished since it
        was listed. A file that cannot be read (permissions, swapped for a symlink)
        is still indexed, without a checksum, and the log says why."""
        try:
            record["checksum"] = sha256_of(path)
        except FileNotFoundError:
            return False
        except OSError as exc:
            ctx.log.warning(f"No checksum for {record['relative_path']}: {exc.strerror or exc}")
        return True

    @staticmethod
    def _flush(ctx: Context, batch: list[Document], seen: int, indexed: int) -> None:
        """Upsert a batch, keeping each record's original ``created`` (one store read
        for the whole batch); record progress (also after an empty batch, so the
        counts move while a selective filter skips most files, and the final counts
        are always visible)."""
        if batch:
            # In key order: neighbouring keys share index pages, so a batch dirties
            # (and its commit writes) fewer pages than in the order of the disk.
            batch.sort(key=lambda record: str(record["uuid"]))
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
    def _mark_vanished(
        ctx: Context, job_uuid: str, present: set[str], written: int, date: str, size: int
    ) -> int:
        """Files indexed before that are gone from the archive now are marked
        ``present: false``, not silently kept. (Files that still exist but a filter
        left out this time keep their records.)

        Every record written by this run is present; when the job has no other
        present records (the usual re-index: same tree, no filter), one count says
        so and the page-by-page scan of every record is skipped."""
        store = ctx.runtime.store
        if store.count("files", {"job_uuid": job_uuid, "present": True}) == written:
            return 0
        gone: list[Document] = []
        after = None
        while True:
            page = store.find(
                "files", {"job_uuid": job_uuid, "present": True}, limit=size, after=after
            )
            gone.extend(
                {**d, "present": False, "updated": date}
                for d in page.items
                if d["uuid"] not in present
            )
            if page.next is None:
                break
            after = page.next
        for start in range(0, len(gone), size):
            store.put_many("files", gone[start : start + size])
        return len(gone)


ACTOR = JobsIndexer()
