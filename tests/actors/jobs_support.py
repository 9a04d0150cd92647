"""Helpers shared by the jobs-manager and jobs-indexer tests (not a test module).

Jobs are made directly in the store (no launcher), as the launcher-proxy would make
them: a pipeline, then a job with an archive path and, optionally, an automatic
indexing configuration. Messages are then sent through ``runtime.submit`` and run
with ``runtime.bus.join()``.
"""

from __future__ import annotations

from typing import Any

from pipelinejobs.adapters.store.base import Document
from pipelinejobs.runtime.dispatch import Runtime
from tests.support import stub as bus

ARCHIVE = "/products/v2/1064aaf1459c5e42820db822aa4b3990/linkhash/datahash"
PIPELINE = {"name": "Tacobot 9001", "components": [{"repo": "sd2e/tacobot:0.1.0"}]}
#: The seed's index filters, URL-encoded as in its example.
SEED_FILTERS = ["sample%5C.uw_biofab%5C.141715", "sample-uw_biofab-141715"]


def make_job(
    rt: Runtime,
    *,
    index: dict[str, Any] | None = None,
    archive: str | None = ARCHIVE,
    linkage: tuple[str, ...] = ("sample.uw_biofab.141715",),
    data: dict[str, Any] | None = None,
    state: str = "CREATED",
) -> Document:
    """A stored job; ``state`` RUNNING or FINISHED applies run/finish directly."""
    pipeline = rt.pipelines.create(PIPELINE).pipeline
    fields: dict[str, Any] = {}
    if archive is not None:
        fields["archive_path"] = archive
    if index is not None:
        fields["index"] = index
    job = rt.jobs.create(
        pipeline_uuid=pipeline["uuid"],
        linkage=list(linkage),
        data=data if data is not None else {"sample": linkage[0]},
        fields=fields,
    ).job
    walk = {"CREATED": [], "RUNNING": ["run"], "FINISHED": ["run", "finish"]}[state]
    for event in walk:
        job = rt.jobs.apply(job["uuid"], event).job
    return job


def token(rt: Runtime, job: Document) -> str:
    return rt.tokens.update_token(job["uuid"], int(job.get("token_rotation", 0)))


def run(rt: Runtime, alias: str, message: Any, params: dict[str, Any] | None = None) -> Document:
    """Submit, deliver everything, and return the submitted execution's final record."""
    execution = rt.submit(alias, message, params)
    bus(rt).join()
    return rt.executions.get(execution["id"])


def executions_of(rt: Runtime, alias: str) -> list[Document]:
    return rt.store.find("executions", {"actor": alias}, limit=1000).items


def names(job: Document) -> list[str]:
    return [entry["name"] for entry in job["history"]]


def write_files(rt: Runtime, files: dict[str, bytes], archive: str = ARCHIVE) -> None:
    for relative, content in files.items():
        rt.storage.write(archive, relative, content)
