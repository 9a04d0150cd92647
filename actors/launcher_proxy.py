"""PipelineJobs Launcher Proxy (the seed's Agave Proxy): launches managed jobs.

From the seed: "Construct and send a message including the following components:
an Agave job definition, a metadata linkage parameter, optional control
parameters" (``agave_pipelinejob``). The proxy creates the job — or finds it: the
same pipeline, linkage and data is the same job — computes its archive path, hands
it to a launcher backend whose status callbacks reach the jobs-manager with the
job's token, and records ``run``. The job records its ``session`` (given, or a new
``adjective-animal`` naming its instancing directory), ``agent`` and ``task`` as
absolute URLs, what it derives from and acts on (:mod:`pipelinejobs.domain.provenance`),
and its automatic indexing: on by default ("normally run automatically ... when a job
enters the FINISHED state"), every file at level "1", off with ``index: false``.

Which pipeline: ``pipeline_uuid`` if given, else the pipeline with a component whose
id is the job definition's ``appId``. Which linkage: "if both measurement_id and
sample_id are passed, the linkages are made to the specified measurement(s) while
the archive path is a function of the sample_id value(s)" — the job is linked to the
most specific level given and its archive path hashes the least specific one
(experiment > sample > measurement). Without a catalog to expand a sample into its
measurements, the given ids are linked as they are.

What runs is the pipeline's, never the launch's (``common/components.py``): a
``job_definition`` carrying ``command``, ``image``, ``entrypoint`` or ``environment``
is refused, and for a pipeline with a ``command`` or ``container`` component —
registered with an admin key — the definition's ``parameters`` and ``inputs`` may set
only the variables that component declares (as argv elements or environment, never
through a shell). The backend follows from the component and may be narrowed by
``job_definition.launcher``; it must be one ``launcher.backends`` allows. All of this
is checked in ``admit`` when the pipeline is already registered, so a refused launch
stores nothing, and again in ``handle``.

Runs (issue 15, :mod:`pipelinejobs.domain.runs`): a ``create_run`` message makes one
(or finds it: same pipeline and name); a launch or create naming its ``run`` is
refused unless that run exists (404) and is of the job's pipeline (400).

Dependencies (issue 16, :mod:`pipelinejobs.runtime.releases`): a launch naming
``depends_on`` creates its job and launches it only once its parents meet its
condition; a ``release`` message (sent when a parent moves) looks again.
"""

from __future__ import annotations

from typing import Any

from pipelinejobs.access.keys import SYSTEM_OWNER, Principal
from pipelinejobs.access.nonces import Nonces
from pipelinejobs.adapters.launchers import Launch, choose, make_launcher, needs_callback
from pipelinejobs.adapters.storage import LocalStorage
from pipelinejobs.adapters.store.base import Document
from pipelinejobs.adapters.store.cas import Change, compare_and_set
from pipelinejobs.config import Config
from pipelinejobs.domain import (
    archive_paths,
    components,
    deadlines,
    job_log,
    provenance,
    retry,
    runs,
    tags,
)
from pipelinejobs.domain.clock import now
from pipelinejobs.domain.lifecycle import State
from pipelinejobs.errors import (
    Conflict,
    DuplicateDocument,
    NotFound,
    PipelineJobsError,
    ValidationError,
)
from pipelinejobs.runtime import releases
from pipelinejobs.runtime.actor import Actor, Context, Message, Params

#: Least specific first: the archive path hashes the first level present, the job is
#: linked to the last.
LEVELS = ("experiment_design_id", "experiment_id", "sample_id", "measurement_id")
DEFAULT_LEVEL = "1"


def as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def linkage(parameters: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(ids the job is linked to, ids its archive path is a function of)."""
    present = [as_list(parameters[level]) for level in LEVELS if parameters.get(level)]
    return sorted(set(present[-1])), sorted(set(present[0]))


def archive_path_for(
    rt: Any, body: Document, pipeline: Document, path_ids: list[str], data: Any, session: str
) -> str:
    """Where a new job's outputs go: the message's ``archive_path`` (on this deployment's
    storage system only), else the path the design card derives from its pipeline,
    linkage, data and session (instanced unless ``instanced: false``). Refused before
    anything is written if it would escape the storage root."""
    if body.get("archive_path"):
        system, path = explicit_path(body["archive_path"])
        if system != rt.storage.system:
            # Writing elsewhere while the job claims another system would lose the
            # outputs from the caller's view; say which system this deployment has.
            raise ValidationError(
                f"archive path {body['archive_path']!r} is on storage system "
                f"{system!r}; this deployment archives to {rt.storage.system!r}",
                path="archive_path",
            )
    else:
        path = archive_paths.archive_path(
            pipeline_uuid=pipeline["uuid"],
            linkage=path_ids,
            data=data,
            domain=rt.ids.domain,
            instanced=body.get("instanced", True),
            clock=rt.clock,
            session=session,
        )
    rt.storage.resolve(path)
    return str(path)


def explicit_path(uri: str) -> tuple[str, str]:
    """(storage system, path) of an ``agave://system/path`` archive URI."""
    rest = uri.split("://", 1)[1]
    system, _, path = rest.partition("/")
    return system, "/" + path


def plan(config: Config, definition: dict[str, Any], pipeline: Document) -> str:
    """The backend a launch runs on, once its variables are found to be ones its
    pipeline's component declares (ValidationError naming the field otherwise)."""
    component = components.runnable(pipeline, definition)
    if component is not None:
        components.compute(component, definition)
    return choose(config, definition, pipeline)


class LauncherProxy(Actor):
    alias = "launcher-proxy"
    description = "Launches compute jobs as managed PipelineJobs"
    accepts = (
        "agave_pipelinejob",
        "pipelinejob_create",
        "pipelinejob_retry",
        "pipelinejob_run_create",
        "pipelinejob_release",
    )

    def parse(self, message: Any, params: Params) -> Message:
        if self.body_of(message).get("action") == "retry":
            return Message("retry", self.validated("pipelinejob_retry", self.body_of(message)))
        if self.body_of(message).get("action") == "create_run":
            return Message(
                "create_run", self.validated("pipelinejob_run_create", self.body_of(message))
            )
        if self.body_of(message).get("action") == "release":
            return Message("release", self.validated("pipelinejob_release", self.body_of(message)))
        if self.body_of(message).get("action") == "create":
            body = self.validated("pipelinejob_create", self.body_of(message))
            deadlines.limits(body, {})  # "0s" passes the schema: refused here, by name
            return parse_create(body)
        body = self.validated("agave_pipelinejob", self.body_of(message))
        deadlines.limits(body, {})
        components.refuse_compute_fields(body["job_definition"])
        refuse_unused_index_refinements(body)
        if body.get("archive_path"):
            # ``..`` and NUL need no storage to refuse: refuse them before anything is stored.
            LocalStorage.normalise(explicit_path(body["archive_path"])[1])
        return Message("launch", body)

    def admit(self, runtime: Any, msg: Message, role: str, owner: str | None = None) -> None:
        """What needs the disk or the store, refused before the message is queued: an
        explicit archive path escaping through a symlink, and a launch its pipeline
        does not allow (an undeclared variable, a backend it or the deployment does
        not run). A pipeline not found is left for ``handle`` to report."""
        if msg.kind == "create":
            admit_create(runtime, msg.body)
            return
        if msg.kind == "retry":
            admit_retry(runtime, msg.body, role)
            return
        if msg.kind == "create_run":
            runtime.pipelines.require_active(
                runtime.pipelines.get(plain_uuid(msg.body["pipeline_uuid"]))
            )
            return
        if msg.kind == "release":
            job = runtime.jobs.get(msg.body["uuid"])
            authorize_retry(runtime, job, msg.body.get("token"), role, action="release")
            return
        releases.declared(runtime.store, msg.body)
        if msg.body.get("archive_path"):
            runtime.storage.resolve(explicit_path(msg.body["archive_path"])[1])
        definition = msg.body["job_definition"]
        try:
            pipeline = runtime.pipelines.resolve(
                uuid=msg.body.get("pipeline_uuid"), app_id=definition.get("appId")
            )
        except (NotFound, Conflict):
            return
        backend = plan(runtime.config, definition, pipeline)
        make_launcher(backend, runtime.config, runtime.storage).admit(definition, pipeline)
        run_of(runtime, msg.body, pipeline)

    def handle(self, ctx: Context, msg: Message) -> dict[str, Any]:
        if msg.kind == "create":
            return create_job(ctx, msg.body)
        if msg.kind == "retry":
            return self._retry(ctx, msg.body)
        if msg.kind == "create_run":
            return create_run(ctx, msg.body)
        if msg.kind == "release":
            job = ctx.runtime.jobs.get(msg.body["uuid"])
            authorize_retry(ctx.runtime, job, msg.body.get("token"), ctx.role, action="release")
            return releases.release(ctx, job, lambda job: self._replay(ctx, job))
        rt, body = ctx.runtime, msg.body
        dependency = releases.declared(rt.store, body)
        definition = body["job_definition"]
        pipeline = rt.pipelines.resolve(
            uuid=body.get("pipeline_uuid"), app_id=definition.get("appId")
        )
        rt.pipelines.require_active(pipeline)
        backend = plan(rt.config, definition, pipeline)
        run = run_of(rt, body, pipeline)
        make_launcher(backend, rt.config, rt.storage).check(definition, pipeline)
        linked, path_ids = linkage(body["parameters"])
        data = body.get("data") or definition
        session = body.get("session") or archive_paths.new_session()
        path = archive_path_for(rt, body, pipeline, path_ids, data, session)
        links = provenance.links(rt.store, rt.ids, rt.storage.system, definition, body.get("data"))
        if dependency is not None:
            links = provenance.with_parents(links, dependency.parents)
        fields: dict[str, Any] = {
            "archive_path": path,
            "archive_system": rt.storage.system,
            "session": session,
            "agent": ctx.agent_url(),
            "task": ctx.task_url(),
            "launch": {
                "job_definition": definition,
                "backend": backend,
                "instanced": not body.get("archive_path") and body.get("instanced", True),
                **({"retry": body["retry"]} if body.get("retry") else {}),
            },
            **links.fields(),
            **(dependency.fields() if dependency else {}),
            **ownership(ctx, body),
            **({"run": run["uuid"]} if run else {}),
            # What its events are published with (Runtime.priority_for): its run's
            # unless the launch names one.
            "priority": runs.job_priority(body.get("priority"), run),
            **limits_of(rt, body, pipeline),
        }
        index = index_fields(body)  # every file at level "1" unless refined or off
        if index is not None:
            fields["index"] = index
        created = rt.jobs.create(
            pipeline_uuid=pipeline["uuid"],
            linkage=linked,
            data=data,
            fields=fields,
            sender=ctx.sender,
        )
        job = created.job
        # A redelivery of the launch that created it (the same execution) goes on.
        ours = created.created or str(job.get("task", "")).endswith(
            f"/executions/{ctx.execution_id}"
        )
        if not ours and job["state"] != State.CREATED:
            ctx.log.info(f"Job {job['uuid']} already exists ({job['state']}); not launched again")
            return {
                "uuid": job["uuid"],
                "created": False,
                "launched": False,
                "state": job["state"],
                "archive_path": job["archive_path"],
                "message": "this job already exists; use the token issued when it was created",
            }
        ctx.log.info(
            f"{'Created' if created.created else 'Found'} job {job['uuid']} "
            f"at {job['archive_path']}"
        )
        if job.get("depends_on"):  # launched now if its parents already meet it
            released = releases.evaluate(ctx, job, lambda job: self._replay(ctx, job))
            token = rt.tokens.update_token(job["uuid"], int(job.get("token_rotation", 0)))
            return {"token": token, **released, "created": created.created}
        launched = self._launch(ctx, pipeline, job, definition, backend)
        return {**launched, "created": created.created}

    def _retry(self, ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
        """Retry a FAILED job (see :mod:`pipelinejobs.domain.retry`): ``reset`` and
        ``ready`` under the system's authority (their data say who asked, why, and the
        attempt), the job's ``attempt`` and archive path moved on with the earlier
        attempt kept in ``attempts``, then its stored launch replayed. Every step is
        keyed on (job, attempt): a redelivery, or a second request for the same
        attempt, finds them done instead of making attempt n+2."""
        rt, uuid = ctx.runtime, body["uuid"]
        job = rt.jobs.get(uuid)
        authorize_retry(ctx.runtime, job, body.get("token"), ctx.role)
        current = retry.attempt_of(job)
        # A manual retry names no attempt: a redelivery of one that already moved the
        # job on finds the attempt it retried on the job, recorded with its execution.
        done = [a for a in job.get("attempts") or [] if a.get("execution") == ctx.execution_id]
        failed = int(body.get("attempt") or (done[-1]["attempt"] if done else current))
        target = failed + 1
        if failed > current:
            raise Conflict(
                f"job {uuid} is on attempt {current}: there is no attempt {failed} to retry",
                uuid=uuid,
                state=job["state"],
            )
        ours = self._ours(rt, job, target, ctx)  # a redelivery of this very retry
        if current > target or (current == target and not ours):
            ctx.log.info(f"Job {uuid}: attempt {target} was already started; not again")
            return {"uuid": uuid, "retried": False, "attempt": current, "state": job["state"],
                    "message": f"attempt {target} of this job was already started"}  # fmt: skip
        if current == failed and not ours:
            refused = retry.refusal(job)
            if refused:
                raise Conflict(refused, uuid=uuid, state=job["state"])
        who = {
            "reason": body.get("reason") or "retried",
            "requested_by": ctx.sender or "unknown",
            "attempt": target,
            "execution": ctx.execution_id,
        }
        reset = rt.jobs.apply(uuid, "reset", who, delivery_id=f"retry:{target}", sender=self.alias)
        if reset.duplicate and reset.entry["data"].get("execution") != ctx.execution_id:
            ctx.log.info(f"Job {uuid}: attempt {target} is another execution's; not again")
            return {"uuid": uuid, "retried": False, "attempt": target,
                    "state": reset.job["state"],
                    "message": f"attempt {target} of this job was already started"}  # fmt: skip

        def next_attempt(doc: Document) -> Change | None:
            if retry.attempt_of(doc) >= target:
                return None  # a redelivery: already moved on
            earlier = {
                "attempt": failed,
                "archive_path": doc.get("archive_path"),
                "reason": who["reason"],
                "retried": reset.entry["date"],
                "execution": ctx.execution_id,
            }
            return Change(
                set={
                    "attempt": target,
                    "archive_path": retry.next_archive_path(doc, target, rt.clock),
                    "attempts": [*(doc.get("attempts") or []), earlier],
                }
            )

        job = compare_and_set(rt.store, "jobs", uuid, next_attempt, what=f"job {uuid}")
        rt.jobs.apply(uuid, "ready", who, delivery_id=f"retry:{target}:ready", sender=self.alias)
        job = rt.jobs.get(uuid)
        ctx.log.info(
            f"Retrying job {uuid} as attempt {target} at {job['archive_path']} ({who['reason']})"
        )
        # A dependent waits for its parents again (launched now if they still meet it).
        launched = releases.evaluate(ctx, job, lambda job: self._replay(ctx, job))
        return {**launched, "retried": True, "attempt": target}

    def _replay(self, ctx: Context, job: Document) -> dict[str, Any]:
        """Launch ``job`` as its stored launch says (a retry, a released dependent)."""
        launch = job["launch"]
        pipeline = ctx.runtime.pipelines.get(job["pipeline_uuid"])
        return self._launch(ctx, pipeline, job, launch["job_definition"], launch["backend"])

    @staticmethod
    def _ours(rt: Any, job: Document, target: int, ctx: Context) -> bool:
        """Whether attempt ``target`` (already the job's) was started by this execution
        (a redelivery of it goes on)."""
        record = rt.store.get(job_log.LOG, rt.ids.event(job["uuid"], f"retry:{target}"))
        return bool(record) and (record.get("data") or {}).get("execution") == ctx.execution_id

    @staticmethod
    def _callback_base(ctx: Context, uuid: str, token: str, backend: str) -> tuple[str, str]:
        """The jobs-manager URL a backend posts statuses to, with the job's token and a
        nonce minted for it: limited uses for a job we watch, unlimited but expiring
        for one that reports on its own (an Agave notification fires per status).
        Returns the URL and the nonce (to delete it if the launch does not use it)."""
        rt = ctx.runtime
        settings = rt.config.launcher
        system = Principal("system", "launcher-proxy", "user", SYSTEM_OWNER, ("jobs-manager",))
        watched = backend in ("local", "docker", "slurm")
        nonce, _ = Nonces(rt.store, clock=rt.clock).create(
            "jobs-manager",
            system,
            level="EXECUTE",
            max_uses=settings.callback_nonce_uses if watched else -1,
            description=f"status callbacks of job {uuid}",
            expires_in=None if watched else settings.callback_nonce_ttl,
        )
        url = (
            f"{rt.config.public_url}/actors/v2/jobs-manager/messages?uuid={uuid}"
            f"&token={token}&x-nonce={nonce}"
        )
        return url, nonce

    @staticmethod
    def _drop_nonce(ctx: Context, nonce: str | None) -> None:
        if nonce is not None:
            Nonces(ctx.runtime.store, clock=ctx.runtime.clock).delete("jobs-manager", nonce)

    def _launch(
        self,
        ctx: Context,
        pipeline: Document,
        job: Document,
        definition: dict[str, Any],
        backend: str,
    ) -> dict[str, Any]:
        rt, uuid = ctx.runtime, job["uuid"]
        token = rt.tokens.update_token(uuid, int(job.get("token_rotation", 0)))
        callback_base: str | None = None
        nonce: str | None = None
        if needs_callback(backend):
            callback_base, nonce = self._callback_base(ctx, uuid, token, backend)
        rt.jobs.apply(
            uuid,
            "run",
            {
                "launcher": backend,
                "archive_path": job["archive_path"],
                "callback": f"{rt.config.public_url}/actors/v2/jobs-manager/messages"
                if callback_base
                else None,
            },
            delivery_id=ctx.execution_id,
            sender=ctx.sender,
        )

        def report(status: str, callback: Any) -> str:
            return ctx.send(
                "jobs-manager", dict(callback), {"uuid": uuid, "status": status, "token": token}
            )

        launcher = make_launcher(backend, rt.config, rt.storage)
        try:
            started = launcher.launch(
                Launch(
                    job,
                    pipeline,
                    definition,
                    job["archive_path"],
                    rt.storage.resolve(job["archive_path"]),
                    token,
                    report,
                    callback_base,
                    rt.config.log_dir / f"{uuid}.log",
                    launch_id=ctx.execution_id,
                )
            )
        except PipelineJobsError as exc:
            ctx.log.error(f"Launch of {uuid} failed: {exc.message}")
            self._drop_nonce(ctx, nonce)
            failed = rt.jobs.apply(
                uuid,
                "fail",
                {"reason": exc.message},
                delivery_id=f"{ctx.execution_id}:launch-failed",
                sender=ctx.sender,
            )
            releases.follow(ctx, failed, "fail")
            raise
        if started.get("already_started"):
            # A redelivery of this launch: the compute reports with the first delivery's
            # nonce, so the one minted now would never be used.
            self._drop_nonce(ctx, nonce)
            ctx.log.info(f"Job {uuid} was already launched by this execution; not again")
        else:
            ctx.log.info(f"Launched job {uuid} on {launcher.name}")
        return {
            "uuid": uuid,
            "token": token,
            "launched": True,
            "pipeline_uuid": pipeline["uuid"],
            "archive_path": job["archive_path"],
            "launch": started,
        }


# -- retrying a FAILED job (issue 15) -------------------------------------------------------


def authorize_retry(
    runtime: Any, job: Document, token: str | None, role: str, action: str = "retry"
) -> None:
    """An admin key, or the job's update token (or an admin token), may retry it (or
    release it: ``action`` names what is refused)."""
    if role == "admin":
        return
    runtime.tokens.authorize(job["uuid"], int(job.get("token_rotation", 0)), token, action=action)


def admit_retry(runtime: Any, body: dict[str, Any], role: str) -> None:
    """Refused before it is queued: an unknown job (404), a wrong token (403), a job
    that is not FAILED (409 naming its state). A retry naming an attempt the job has
    already left (a redelivered automatic retry) is let through: ``handle`` answers
    that it was already done."""
    job = runtime.jobs.get(body["uuid"])
    authorize_retry(runtime, job, body.get("token"), role)
    if int(body.get("attempt") or retry.attempt_of(job)) == retry.attempt_of(job):
        refused = retry.refusal(job)
        if refused:
            raise Conflict(refused, uuid=job["uuid"], state=job["state"])


# -- creating a job without launching it (pipelinejob_create) -------------------------------
#
# The seed's ManagedPipelineJob ran its compute wherever the script or reactor using it
# was, and wrote the job into MongoDB itself. Here it sends this message: the proxy
# creates the job exactly as for a launch — same identity, archive path, agent and task —
# and stops there. The sender reports the job's events to the jobs-manager with the
# token it is given (pipelinejobs.client.ManagedPipelineJob).

#: The launch fields that refine automatic indexing; ``index: false`` turns it off.
INDEX_REFINEMENTS = ("index_patterns", "processing_level", "index_fixity")


def refuse_unused_index_refinements(body: dict[str, Any]) -> None:
    """A launch or create message saying ``index: false`` and also refining the
    automatic indexing it turns off contradicts itself: refused (400 naming the field)
    rather than half obeyed."""
    if body.get("index") is False:
        given = [name for name in INDEX_REFINEMENTS if name in body]
        if given:
            raise ValidationError(
                f"index is false, so {given[0]} has nothing to refine: automatic indexing "
                f"is off (send an index request to the jobs-indexer instead)",
                path=given[0],
            )


def parse_create(body: dict[str, Any]) -> Message:
    """A validated ``pipelinejob_create``: what needs no store is refused here."""
    refuse_unused_index_refinements(body)
    if body.get("archive_path"):
        LocalStorage.normalise(explicit_path(body["archive_path"])[1])
    return Message("create", body)


def plain_uuid(value: str) -> str:
    """A typed UUID without its optional ``uri:urn:`` prefix (how records are keyed)."""
    return value.removeprefix("uri:urn:")


def admit_create(runtime: Any, body: dict[str, Any]) -> None:
    """Refused before anything is queued: an archive path escaping the storage root,
    a pipeline that is unknown or takes no new jobs, and a ``derived_from`` naming a
    job or file that does not exist (400 naming the item)."""
    if body.get("archive_path"):
        runtime.storage.resolve(explicit_path(body["archive_path"])[1])
    pipeline = runtime.pipelines.get(plain_uuid(body["pipeline_uuid"]))
    runtime.pipelines.require_active(pipeline)
    run_of(runtime, body, pipeline)
    for i, parent in enumerate(body.get("derived_from") or []):
        key = plain_uuid(parent)
        kind, collection = ("job", "jobs") if key.startswith("107") else ("file", "files")
        if runtime.store.get(collection, key) is None:
            raise ValidationError(
                f"derived_from/{i}: no {kind} {key}: a job can derive only from jobs and "
                f"files that exist",
                path=f"derived_from/{i}",
            )


def run_of(runtime: Any, body: dict[str, Any], pipeline: Document) -> Document | None:
    """The run a launch names (its record), None if it names none: a run that
    does not exist is a 404, one of another pipeline a 400, both naming it."""
    if not body.get("run"):
        return None
    uuid = plain_uuid(body["run"])
    found = runtime.store.get("runs", uuid)
    if found is None:
        raise NotFound(f"run {uuid} does not exist: create it first (create_run)", uuid=uuid)
    if found["pipeline_uuid"] != pipeline["uuid"]:
        raise ValidationError(
            f"run {uuid} belongs to pipeline {found['pipeline_uuid']}, not to this job's "
            f"pipeline {pipeline['uuid']}",
            path="run",
        )
    return found


def create_run(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    """Create a run (or find it: the same pipeline and name is the same run, whose
    stored fields a second creation does not change)."""
    rt = ctx.runtime
    pipeline = rt.pipelines.get(plain_uuid(body["pipeline_uuid"]))
    rt.pipelines.require_active(pipeline)
    uuid = rt.ids.run(pipeline["uuid"], body["name"])
    date = now(rt.clock)
    doc: dict[str, Any] = {
        "uuid": uuid,
        "pipeline_uuid": pipeline["uuid"],
        "name": body["name"],
        "priority": body.get("priority") or runs.DEFAULT_PRIORITY,
        "domain_context": body.get("domain_context") or {},
        **tags.fields(body.get("tags") or {}),
        "created": date,
        "updated": date,
        **({"owner": ctx.owner} if ctx.owner else {}),
    }
    existing = rt.store.get("runs", uuid)
    created = existing is None
    if created:
        try:
            rt.store.insert("runs", doc)
        except DuplicateDocument:
            created = False
    run = rt.store.get("runs", uuid) or doc
    ctx.log.info(f"{'Created' if created else 'Found'} run {uuid} ({body['name']!r})")
    return {"uuid": uuid, "created": created, "name": run["name"],
            "pipeline_uuid": run["pipeline_uuid"], "priority": run["priority"]}  # fmt: skip


def ownership(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    """A new job's ``owner`` (whose key or nonce sent the launch or create message;
    none for one sent without a credential, by the CLI's ``send``) and its ``tags``
    (with ``tag_pairs``, what the store indexes): issue 15."""
    out: dict[str, Any] = tags.fields(body.get("tags") or {})
    if ctx.owner:
        out["owner"] = ctx.owner
    return out


def index_fields(body: dict[str, Any]) -> dict[str, Any] | None:
    """The job's automatic indexing configuration from a launch or create message
    (None: ``index: false``, off). By default the seed's: every file under the archive
    path at processing level "1"; ``index_patterns``, ``processing_level`` and
    ``index_fixity`` refine it."""
    if body.get("index") is False:
        return None
    config: dict[str, Any] = {
        "patterns": list(body.get("index_patterns") or []),
        "level": body.get("processing_level") or DEFAULT_LEVEL,
    }
    if body.get("index_fixity"):
        config["fixity"] = True
    return config


def limits_of(runtime: Any, body: dict[str, Any], pipeline: Document) -> dict[str, float]:
    """The new job's deadline and heartbeat_timeout (s): the message's, else its
    pipeline's, else the configured default (issue 16: pipelinejobs.domain.deadlines)."""
    settings = runtime.config.reconciler
    return deadlines.limits(body, pipeline, settings.deadline, settings.heartbeat_timeout)


def create_job(ctx: Context, body: dict[str, Any]) -> dict[str, Any]:
    """Create the job of a ``pipelinejob_create`` (or find it: same pipeline, linkage
    and data), in state CREATED. Its token is in the result of the execution that
    created it (a redelivery of it, or a POST repeating its ``Idempotency-Key``, sees
    the same); any other request for the same job learns its uuid only: knowing what
    a job is made of must not be enough to write to it."""
    rt = ctx.runtime
    pipeline = rt.pipelines.get(plain_uuid(body["pipeline_uuid"]))
    rt.pipelines.require_active(pipeline)
    run = run_of(rt, body, pipeline)
    linked, path_ids = linkage(body["parameters"])
    data = body.get("data") or {}
    session = body.get("session") or archive_paths.new_session()
    path = archive_path_for(rt, body, pipeline, path_ids, data, session)
    # As a launch's: the catalog files its data's inputs and parameters name; then the
    # parent jobs and files the message names, after them, in one derived_from.
    links = provenance.links(rt.store, rt.ids, rt.storage.system, data)
    links = provenance.with_parents(links, [plain_uuid(p) for p in body.get("derived_from") or []])
    fields: dict[str, Any] = {
        "archive_path": path,
        "archive_system": rt.storage.system,
        "session": session,
        "agent": ctx.agent_url(),
        "task": ctx.task_url(),
        **links.fields(),
        **ownership(ctx, body),
        # In a run: its run's priority, for its events (Runtime.priority_for).
        **({"run": run["uuid"], "priority": runs.job_priority(None, run)} if run else {}),
        **limits_of(rt, body, pipeline),
    }
    index = index_fields(body)
    if index is not None:
        fields["index"] = index
    created = rt.jobs.create(
        pipeline_uuid=pipeline["uuid"], linkage=linked, data=data, fields=fields, sender=ctx.sender
    )
    job = created.job
    result: dict[str, Any] = {
        "uuid": job["uuid"],
        "created": created.created,
        "state": job["state"],
        "pipeline_uuid": job["pipeline_uuid"],
        "archive_path": job.get("archive_path"),
        "session": job.get("session"),
    }
    ours = created.created or str(job.get("task") or "").endswith(f"/executions/{ctx.execution_id}")
    if ours:
        result["token"] = rt.tokens.update_token(job["uuid"], int(job.get("token_rotation", 0)))
        ctx.log.info(f"{'Created' if created.created else 'Found'} job {job['uuid']} at {path}")
    else:
        result["message"] = "this job already exists; use the token issued when it was created"
        ctx.log.info(f"Job {job['uuid']} already exists ({job['state']}); not created again")
    return result


ACTOR = LauncherProxy()
