"""PipelineJobs Indexer: records the files a job wrote under its archive path.

From the seed: "This Reactor indexes the contents of ManagedPipelineJob archive
paths. It implements two actions: index and indexed. It is normally run
automatically via PipelineJobs Manager when a job enters the FINISHED state, but can
also be activated on its own."

An ``index`` request (JSON ``pipelinejob_index``, or URL parameters ``uuid``,
``name=index``, ``level``, ``token``, ``fixity`` — ``filters`` only in a JSON body:
in the URL it is refused, 400, as the seed says it "cannot currently be passed")
moves the job to INDEXING, lists every file under its archive path, keeps those
whose path relative to the archive path matches any filter (URL-decoded regexes;
none = all), upserts one file record per file with the processing level (default
"1") and, with ``fixity``, the SHA-256 of its contents, marks records of files that
vanished since the last index, and sends ``indexed`` to the jobs-manager, which
moves the job back to FINISHED.

Built for trees of 100k files and more: the tree is streamed (``os.scandir``), never
listed whole; filters run on RE2, linear in the path's length whatever the pattern;
records are written ``indexer.batch_size`` at a time with one store read per batch
(for the ``created`` dates to keep).

Progress is on the execution while it runs (``progress``, README: Indexing), written at
most once per ``indexer.progress_interval`` s and once at the end: ``files_seen``,
``files_indexed``, and ``files_total`` as soon as it is known — a second, cheaper
listing (names only, no ``stat``) counts the tree on a thread of its own, so a large
tree has its total long before the walk that reads sizes and checksums reaches the
end. The ``index`` event on the job's history names the execution (``data.execution``),
so whoever follows the job can follow the indexing too (``pipelinejobs jobs watch``).
"""

from __future__ import annotations

import mimetypes
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import re2

from pipelinejobs import signals
from pipelinejobs.adapters.storage import sha256_of
from pipelinejobs.adapters.store.base import Document, In
from pipelinejobs.config import BOOLEAN_WORDS
from pipelinejobs.domain import retry
from pipelinejobs.domain.clock import iso, now
from pipelinejobs.errors import ValidationError
from pipelinejobs.runtime import releases
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


#: The seed: "Remember that filters cannot currently be passed as URL parameters."
FILTERS_IN_URL = (
    "filters cannot currently be passed as URL parameters: send them in the JSON body "
    '({"filters": [...]}), with the other fields as URL parameters or in the body too'
)


class JobsIndexer(Actor):
    alias = "jobs-indexer"
    description = "Indexes the files under a PipelineJob's archive path"
    accepts = ("pipelinejob_index", "pipelinejob_indexed")

    def parse(self, message: Any, params: Params) -> Message:
        if "filters" in params:
            # Dropping it would index every file and overwrite the levels of files
            # another request indexed: refuse, in the seed's words.
            raise ValidationError(FILTERS_IN_URL, path="filters")
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

    def admit(self, runtime: Runtime, msg: Message, role: str, owner: str | None = None) -> None:
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

        # An event_key names the event whoever sends it (see the jobs-manager).
        key = msg.body.get("event_key")
        delivery = f"key:{key}" if key else ctx.execution_id
        if key:
            authorize(ctx.runtime.jobs.get(uuid))
        if msg.kind == "indexed":
            result = ctx.runtime.jobs.apply(
                uuid,
                "indexed",
                {},
                delivery_id=delivery,
                sender=ctx.sender,
                check=authorize,
            )
            ctx.log.info(f"Job {uuid} marked indexed; state {result.job['state']}")
            releases.follow(ctx, result, "indexed")  # its dependents (issue 16)
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
        # Where the progress of this indexing is (the execution's id is no secret).
        data["execution"] = ctx.execution_id
        started = ctx.runtime.jobs.apply(
            uuid, "index", data, delivery_id=delivery, sender=ctx.sender, check=indexable
        )
        first = started.entry["data"].get("execution")
        if key and started.duplicate and first != ctx.execution_id:
            # The same keyed request, sent again: the execution that applied it indexes
            # (and is redelivered if it dies), so this one has nothing to add.
            ctx.log.info(f"Job {uuid}: index {key!r} was applied by execution {first}")
            return {"uuid": uuid, "duplicate": True, "execution": first}
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
        sent = ctx.send(
            "jobs-manager",
            {"uuid": uuid, "name": "indexed", "token": token},
            key=started.entry["uuid"] if key else None,
        )
        return {"uuid": uuid, "level": level, "fixity": fixity, **counts, "indexed_execution": sent}

    def _index(
        self, ctx: Context, job: Document, level: str, filters: list[Any], fixity: bool
    ) -> dict[str, int]:
        """One pass over the tree. Every ``batch_size`` files seen, the records made
        so far are written in one ``put_many``: memory stays bounded by the batch (plus
        the set of uuids seen, needed to find the files that vanished). The progress is
        recorded when due (:class:`Progress`), the batch so far written first, so
        ``files_indexed`` counts records in the store."""
        storage, ids = ctx.runtime.storage, ctx.runtime.ids
        size = ctx.runtime.config.indexer.batch_size
        archive = archive_of(ctx, job)
        root = storage.normalise(archive)
        date = now(ctx.runtime.clock)
        common = {
            "storage_system": storage.system,
            "level": level,
            "job_uuid": job["uuid"],
            "attempt": retry.attempt_of(job),  # issue 15: which attempt wrote it
            "present": True,
            "created": date,
            "updated": date,
        }
        linked = list(job.get("child_of") or [])
        seen = indexed = 0
        present: set[str] = set()
        batch: list[Document] = []
        counted = (0, 0)  # (seen, indexed) as last announced for the metrics

        def flush() -> None:
            nonlocal counted
            self._flush(ctx, batch)
            signals.files_indexed.send(seen=seen - counted[0], indexed=indexed - counted[1])
            counted = (seen, indexed)

        progress = Progress(ctx, ctx.runtime.config.indexer.progress_interval)
        counter = Counter(storage, archive)
        try:
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
                end_of_batch = seen % size == 0
                if end_of_batch:
                    flush()
                if progress.due(end_of_batch):
                    flush()
                    progress.write(seen, indexed, counter.total)
            flush()
        finally:
            counter.stop()
        vanished = self._mark_vanished(ctx, job["uuid"], present, indexed, date, size, root)
        # The last word, also when nothing was due: the listing is complete.
        progress.write(seen, indexed, seen, vanished=vanished)
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
    def _flush(ctx: Context, batch: list[Document]) -> None:
        """Upsert a batch (if any), keeping each record's original ``created`` (one
        store read for the whole batch)."""
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

    @staticmethod
    def _mark_vanished(
        ctx: Context,
        job_uuid: str,
        present: set[str],
        written: int,
        date: str,
        size: int,
        root: str,
    ) -> int:
        """Files indexed before that are gone from the archive now are marked
        ``present: false``, not silently kept. (Files that still exist but a filter
        left out this time keep their records.)

        Every record written by this run is present; when the job has no other
        present records (the usual re-index: same tree, no filter), one count says
        so and the page-by-page scan of every record is skipped. Only records under
        ``root``, the archive path indexed, can vanish: an earlier attempt's files
        (a retried job's, in its own instancing directory) stay as they were."""
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
                if d["uuid"] not in present and str(d.get("path", "")).startswith(f"{root}/")
            )
            if page.next is None:
                break
            after = page.next
        for start in range(0, len(gone), size):
            store.put_many("files", gone[start : start + size])
        return len(gone)


class Progress:
    """The indexing's progress on its execution, written when due.

    ``due`` is asked after every file: with ``interval`` > 0, it is due once that many
    seconds (of the runtime's clock) have passed since the last write (or the start);
    with 0, at the end of every batch. Each write is ``ctx.progress``: stamped with the
    delivery's attempt, and not written once another delivery has started (a
    redelivery counts again from zero). The fields (README: Indexing):

    * ``phase``: ``indexing``, then ``done`` for the last write;
    * ``files_seen``: files listed so far (every regular file, matched or not);
    * ``files_indexed``: file records written so far (files a filter matched);
    * ``files_total``: the files under the archive path, once a listing is complete
      (the counting thread's, then the walk's own); null until then;
    * ``files_vanished``: (last write) records marked ``present: false``;
    * ``elapsed``: seconds since the indexing started;
    * ``attempt``, ``updated``: which delivery wrote it, and when (``ctx.progress``).
    """

    def __init__(self, ctx: Context, interval: float) -> None:
        self.ctx = ctx
        self.interval = interval
        self.clock = ctx.runtime.clock
        self.started = self.last = self.clock()

    def due(self, end_of_batch: bool) -> bool:
        if self.interval <= 0:
            return end_of_batch
        now = self.clock()
        # A clock set back must not silence the progress until it catches up.
        return now - self.last >= self.interval or now < self.last

    def write(
        self, seen: int, indexed: int, total: int | None, *, vanished: int | None = None
    ) -> None:
        self.last = self.clock()
        values: dict[str, Any] = {
            "phase": "indexing" if vanished is None else "done",
            "files_seen": seen,
            "files_indexed": indexed,
            "files_total": max(total, seen) if total is not None else None,
            "elapsed": round(max(self.last - self.started, 0.0), 3),
        }
        if vanished is not None:
            values["files_vanished"] = vanished
        self.ctx.progress(**values)


class Counter:
    """Counts the files under an archive path on a thread of its own (names only:
    :meth:`~pipelinejobs.adapters.storage.Storage.count_files`), so the progress has a
    total long before the indexing walk ends. ``total`` is None until it is done, or
    if it failed (the walk's own count is then the total, at its end)."""

    def __init__(self, storage: Any, archive: str) -> None:
        self.total: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._count,
            args=(storage.count_files, archive),
            daemon=True,
            name="pipelinejobs-indexer-count",
        )
        self._thread.start()

    def _count(self, count: Callable[..., int | None], archive: str) -> None:
        try:
            self.total = count(archive, self._stop.is_set)
        except Exception:  # noqa: BLE001 - a total is a nicety; the walk has its own
            self.total = None

    def stop(self) -> None:
        """Stop counting (the walk is over, or failed) and wait for the thread."""
        self._stop.set()
        self._thread.join()


ACTOR = JobsIndexer()
