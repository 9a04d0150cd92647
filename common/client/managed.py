"""The seed's ``ManagedPipelineJob``: a job whose compute runs wherever this code runs.

A script, a reactor or a notebook does the work itself and keeps PipelineJobs told,
through a running gateway (a bearer key, or nonces of the actors it talks to)::

    job = ManagedPipelineJob("http://127.0.0.1:8000", key=KEY,
                             pipeline_uuid=PIPELINE, sample_id="sample.tacc.abcde",
                             data={"reads": 1000})
    job.setup()                     # the job, CREATED: job.uuid, job.token, job.callback
    job.run({"host": "node-7"})     # RUNNING
    job.update({"progress": 50})
    job.finish()                    # FINISHED
    job.index(level="2")            # INDEXING, then FINISHED when the indexer is done

Each method is one message through the actors, sent synchronously (it returns the
actor's result, or raises :class:`~pipelinejobs.client.http.ClientError` with the
gateway's status and reason): ``setup`` to the launcher-proxy (a ``pipelinejob_create``),
``run``/``update``/``resource``/``finish``/``fail``/``cancel`` to the jobs-manager,
``index``/``indexed`` to the jobs-indexer. Connection errors and 503s are retried with
back-off.

**Idempotent, so a rerun converges.** ``setup`` sends an ``Idempotency-Key`` derived
from what it creates, so the same request by the same credential is the same execution,
whose result holds the token. Every event carries an ``event_key``, ``<method>:<n>`` for
the n-th call of that method on this object unless the caller gives ``key=``: the
server derives the event's history uuid from the job and that key, so a script killed
half way and run again from the start sends the same keys, and the events it already
sent are reported as duplicates (``"duplicate": true``) instead of applied twice —
whichever execution, credential or day they arrive in.

Differences from the original library, which wrote to MongoDB itself: the job is created
by the launcher-proxy; ``cancel`` is a ``fail`` with a reason (a job's history is never
deleted); linkage ids are not looked up in a catalog.

:class:`ReactorManagedPipelineJob` reads its configuration as the seed's Reactor example
does: the ``pipelines`` stanza of ``config.yml`` and ``_REACTOR_PIPELINES_*`` variables.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import urllib.parse
from collections import Counter
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pipelinejobs.client.http import Client, ClientError

#: The actors' aliases (an Abaco-style id works too).
MANAGER, INDEXER, LAUNCHER = "jobs-manager", "jobs-indexer", "launcher-proxy"
#: Linkage fields, as a launch's ``parameters`` takes them.
LINKAGE = ("experiment_design_id", "experiment_id", "sample_id", "measurement_id")
FINISHED = ("COMPLETE", "ERROR")


class ManagedPipelineJobError(ClientError):
    """The job cannot be managed as asked (no job set up yet, no token for it...)."""


class ManagedPipelineJob:
    """A PipelineJob created and driven from this process (see the module docstring).

    ``url`` is the gateway (default ``$PIPELINEJOBS_URL``, else http://127.0.0.1:8000);
    ``key`` a bearer key (default ``$PIPELINEJOBS_KEY`` when no nonce is given);
    ``nonces`` maps an actor (``jobs-manager``, ``jobs-indexer``, ``launcher-proxy``, or
    the ids given as ``manager_id``...) to a nonce of it, used for that actor instead of
    the key; ``nonce`` is the jobs-manager's (as the seed's ``update_nonce``), which also
    goes into :attr:`callback`.

    The job: ``pipeline_uuid`` and at least one linkage id (``sample_id``,
    ``experiment_id``, ``measurement_id``, ``experiment_design_id``: a string or a list),
    ``data`` (its parameterization, part of its identity), ``session``, ``archive_path``
    (``agave://system/path``) or ``instanced``, ``derived_from`` (parent job or file
    uuids), and the automatic indexing options of a launch (``index``,
    ``index_patterns``, ``processing_level``, ``index_fixity``). An existing job is
    continued with ``uuid`` and ``token`` (``setup`` is then not needed).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        pipeline_uuid: str | None = None,
        key: str | None = None,
        nonce: str | None = None,
        nonces: Mapping[str, str] | None = None,
        manager_id: str = MANAGER,
        indexer_id: str = INDEXER,
        launcher_id: str = LAUNCHER,
        experiment_design_id: str | list[str] | None = None,
        experiment_id: str | list[str] | None = None,
        sample_id: str | list[str] | None = None,
        measurement_id: str | list[str] | None = None,
        data: Mapping[str, Any] | None = None,
        session: str | None = None,
        archive_path: str | None = None,
        instanced: bool | None = None,
        derived_from: Iterable[str] | None = None,
        index: bool | None = None,
        index_patterns: Iterable[str] | None = None,
        processing_level: str | None = None,
        index_fixity: bool | None = None,
        uuid: str | None = None,
        token: str | None = None,
        timeout: float = 300.0,
        retries: int = 8,
        backoff: float = 0.5,
    ) -> None:
        self.url = (url or os.environ.get("PIPELINEJOBS_URL") or "http://127.0.0.1:8000").rstrip(
            "/"
        )
        self.nonces = {str(k): str(v) for k, v in (nonces or {}).items() if v}
        if nonce:
            self.nonces.setdefault(manager_id, nonce)
        if key is None and not self.nonces:
            key = os.environ.get("PIPELINEJOBS_KEY") or None
        self.manager_id, self.indexer_id, self.launcher_id = manager_id, indexer_id, launcher_id
        self.client = Client(self.url, key or None, timeout, retries=retries, backoff=backoff)
        #: How long a synchronous message may take before this gives up waiting (s).
        self.timeout = timeout
        self.pipeline_uuid = pipeline_uuid
        self.linkage = {
            name: value
            for name, value in zip(
                LINKAGE,
                (experiment_design_id, experiment_id, sample_id, measurement_id),
                strict=True,
            )
            if value
        }
        self.data: dict[str, Any] = dict(data or {})
        self.session = session
        self.archive_path = archive_path
        self.instanced = instanced
        self.derived_from = list(derived_from or [])
        self.indexing = {
            name: value
            for name, value in (
                ("index", index),
                ("index_patterns", list(index_patterns) if index_patterns is not None else None),
                ("processing_level", processing_level),
                ("index_fixity", index_fixity),
            )
            if value is not None
        }
        self.uuid = uuid
        self.token = token
        #: The job's state as the last answer said.
        self.state: str | None = None
        self._calls: Counter[str] = Counter()

    # -- creating ---------------------------------------------------------------------------

    def create_message(self) -> dict[str, Any]:
        """The ``pipelinejob_create`` message :meth:`setup` sends."""
        if not self.pipeline_uuid:
            raise ManagedPipelineJobError("a job needs its pipeline_uuid", path="pipeline_uuid")
        if not self.linkage:
            raise ManagedPipelineJobError(
                f"a job needs at least one linkage id: one of {', '.join(LINKAGE)}",
                path="parameters",
            )
        body: dict[str, Any] = {
            "action": "create",
            "pipeline_uuid": self.pipeline_uuid,
            "parameters": dict(self.linkage),
            "data": self.data,
        }
        for name in ("session", "archive_path", "instanced"):
            if getattr(self, name) is not None:
                body[name] = getattr(self, name)
        if self.derived_from:
            body["derived_from"] = list(self.derived_from)
        body.update(self.indexing)
        return body

    def setup(self, data: Mapping[str, Any] | None = None) -> ManagedPipelineJob:
        """Create the job (CREATED), or find it: the same pipeline, linkage and data is
        the same job. ``data`` is merged into the job's data first (as the original's
        ``setup(data)``). Sets :attr:`uuid`, :attr:`token`, :attr:`archive_path`,
        :attr:`session`; returns ``self``.

        The request's ``Idempotency-Key`` is derived from the message, so the same
        script sending it again (the same credential, within the gateway's
        ``idempotency_ttl``) gets the first answer back, token included. A job this
        request did not create answers without its token: pass ``token=`` then.
        """
        if data:
            self.data = {**self.data, **dict(data)}
        body = self.create_message()
        digest = hashlib.sha256(
            json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        result = self._send(self.launcher_id, body, idempotency_key=f"create-{digest}")
        self.uuid = result["uuid"]
        self.state = result.get("state")
        self.archive_path = result.get("archive_path") or self.archive_path
        self.session = result.get("session") or self.session
        if result.get("token"):
            self.token = result["token"]
        elif not self.token:
            raise ManagedPipelineJobError(
                f"job {self.uuid} already exists and was not created by this request, so "
                f"its token is not given out: continue it with ManagedPipelineJob(..., "
                f"uuid={self.uuid!r}, token=<the token it was created with>)",
                uuid=self.uuid,
            )
        return self

    @property
    def callback(self) -> str:
        """The URL a compute backend posts the job's status to (the seed's webhook:
        the jobs-manager's messages with the job's uuid, token and, when one was
        given, the manager's nonce); append ``&status=<STATUS>`` or post an event."""
        self._require_job()
        query = {"uuid": self.uuid, "token": self.token}
        if self.manager_id in self.nonces:
            query["x-nonce"] = self.nonces[self.manager_id]
        return f"{self.url}/actors/v2/{self.manager_id}/messages?{urllib.parse.urlencode(query)}"

    # -- events (the original's method names) -----------------------------------------------

    def run(self, data: Mapping[str, Any] | None = None, *, key: str | None = None) -> Any:
        """The job's compute started: ``run`` (CREATED or RUNNING -> RUNNING)."""
        return self._event("run", data, key)

    def update(self, data: Mapping[str, Any] | None = None, *, key: str | None = None) -> Any:
        """A remark on the job's history (any state but RETIRED; the state is unchanged)."""
        return self._event("update", data, key)

    def resource(self, data: Mapping[str, Any] | None = None, *, key: str | None = None) -> Any:
        """A resource event (what the compute used or is waiting for; state unchanged)."""
        return self._event("resource", data, key)

    def finish(self, data: Mapping[str, Any] | None = None, *, key: str | None = None) -> Any:
        """The compute finished and archived its outputs: FINISHED (and, unless the job
        was created with ``index=False``, the jobs-manager has it indexed)."""
        return self._event("finish", data, key)

    def fail(self, data: Mapping[str, Any] | None = None, *, key: str | None = None) -> Any:
        """The compute failed: FAILED (say why in ``data``, e.g. ``{"reason": ...}``)."""
        return self._event("fail", data, key)

    def cancel(self, reason: str = "cancelled", *, key: str | None = None) -> Any:
        """Give the job up: a ``fail`` saying why (the original deleted a job that had
        not run; here a job's history is kept, so cancelling is failing it)."""
        return self._event("fail", {"reason": reason}, key, method="cancel")

    def index(
        self,
        filters: Iterable[str] | None = None,
        level: str | None = None,
        fixity: bool = False,
        *,
        key: str | None = None,
    ) -> Any:
        """Index the job's archive path (the job must be FINISHED): the jobs-indexer
        links the files matching ``filters`` (every file without) at processing
        ``level`` ("1"), with checksums if ``fixity``, then sends ``indexed``. Returns
        the indexer's result (its counts) once it is done."""
        body: dict[str, Any] = {}
        if filters is not None:
            body["filters"] = list(filters)
        if level is not None:
            body["level"] = level
        if fixity:
            body["fixity"] = True
        return self._event("index", None, key, extra=body)

    def indexed(self, *, key: str | None = None) -> Any:
        """Mark the job's indexing done (FINISHED): what the indexer sends itself after
        an ``index``; for indexing done some other way."""
        return self._event("indexed", None, key)

    # -- reading ----------------------------------------------------------------------------

    def get(self) -> dict[str, Any]:
        """The job's record as the read API shows it (``GET /jobs/<uuid>``: a bearer key
        is needed, nonces belong to actors)."""
        self._require_job()
        job: dict[str, Any] = self.client.request("GET", f"/jobs/{self.uuid}")
        self.state = job.get("state", self.state)
        return job

    # -- sending ----------------------------------------------------------------------------

    def _require_job(self) -> None:
        if not self.uuid or not self.token:
            raise ManagedPipelineJobError(
                "no job yet: call setup() first (or give uuid= and token= to continue one)"
            )

    def _event(
        self,
        name: str,
        data: Mapping[str, Any] | None,
        key: str | None,
        *,
        method: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Any:
        self._require_job()
        method = method or name
        self._calls[method] += 1
        body: dict[str, Any] = {
            "uuid": self.uuid,
            "name": name,
            "token": self.token,
            "event_key": key or f"{method}:{self._calls[method]}",
            **dict(extra or {}),
        }
        if data:
            body["data"] = dict(data)
        actor = self.indexer_id if name in ("index", "indexed") else self.manager_id
        result = self._send(actor, body)
        if isinstance(result, dict) and result.get("state"):
            self.state = result["state"]
        return result

    def _params(self, actor: str, **params: str) -> dict[str, str]:
        """URL parameters of a request to ``actor``: with its nonce when there is no
        key (a key is what the gateway looks at first: the nonce would be unused)."""
        if self.client.key is None and actor in self.nonces:
            params["x-nonce"] = self.nonces[actor]
        return params

    def _send(self, actor: str, body: dict[str, Any], *, idempotency_key: str | None = None) -> Any:
        """POST ``body`` to ``actor`` and wait for its execution: its result, or a
        ClientError with the gateway's status and the actor's reason."""
        execution = self.client.request(
            "POST",
            f"/actors/v2/{actor}/messages",
            self._params(actor, _abaco_synchronous="true"),
            body,
            idempotency_key=idempotency_key,
        )
        deadline = time.monotonic() + self.timeout
        while execution.get("status") not in FINISHED:  # still running at the sync timeout
            if time.monotonic() > deadline:
                raise ClientError(
                    f"execution {execution['id']} of {actor} is still {execution.get('status')} "
                    f"after {self.timeout:.0f} s",
                    execution=execution["id"],
                )
            time.sleep(0.2)
            execution = self.client.request(
                "GET", f"/actors/v2/{actor}/executions/{execution['id']}", self._params(actor)
            )
        if execution["status"] == "ERROR":
            error = execution.get("error") or {}
            raise ClientError(
                str(error.get("message") or "the execution failed"),
                execution=execution["id"],
                error=error.get("error"),
            )
        return execution.get("result")


# -- the Reactor helper -----------------------------------------------------------------------

#: The ``pipelines`` settings the helper reads, each overridable by the environment
#: variable ``_REACTOR_PIPELINES_<NAME>`` (the Reactors SDK's convention, so the nonces
#: can live in ``secrets.json`` and never in ``config.yml``).
REACTOR_SETTINGS = (
    "api_server",
    "api_key",
    "pipeline_uuid",
    "job_manager_id",
    "job_indexer_id",
    "job_launcher_id",
    "job_manager_nonce",
    "job_indexer_nonce",
    "job_launcher_nonce",
)


def reactor_settings(
    reactor: Any = None,
    config_file: str | os.PathLike[str] = "config.yml",
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The ``pipelines`` settings of a reactor: from ``reactor.settings`` when a
    reactor is given, else from the ``pipelines`` stanza of ``config_file`` (if it
    exists); each then overridden by ``_REACTOR_PIPELINES_<NAME>``. The gateway, when
    no ``api_server`` is set, is ``$_abaco_api_server`` (what Abaco gives an actor),
    else ``$PIPELINEJOBS_URL``; the key, when no ``api_key``, ``$PIPELINEJOBS_KEY``."""
    env = os.environ if environ is None else environ
    stanza: Any = None
    if reactor is not None and getattr(reactor, "settings", None) is not None:
        settings = reactor.settings
        stanza = settings.get("pipelines") if isinstance(settings, Mapping) else None
        stanza = stanza if stanza is not None else getattr(settings, "pipelines", None)
    elif Path(config_file).is_file():
        import yaml

        loaded = yaml.safe_load(Path(config_file).read_text()) or {}
        if not isinstance(loaded, Mapping):
            raise ManagedPipelineJobError(f"{config_file} does not hold a mapping of settings")
        stanza = loaded.get("pipelines")
    out: dict[str, str] = {}
    for name in REACTOR_SETTINGS:
        value = stanza.get(name) if isinstance(stanza, Mapping) else getattr(stanza, name, None)
        value = env.get(f"_REACTOR_PIPELINES_{name.upper()}") or value
        if value not in (None, ""):
            out[name] = str(value)
    fallbacks = {
        "api_server": ("_abaco_api_server", "PIPELINEJOBS_URL"),
        "api_key": ("PIPELINEJOBS_KEY",),
    }
    for name, variables in fallbacks.items():
        for variable in variables:
            if name not in out and env.get(variable):
                out[name] = env[variable]
    return out


class ReactorManagedPipelineJob(ManagedPipelineJob):
    """A :class:`ManagedPipelineJob` configured as the seed's Reactor example is.

    ``config.yml``::

        pipelines:
          pipeline_uuid: 106bd127-e2d2-57ac-b9be-11ed06042e68
          job_manager_id: jobs-manager      # the jobs-manager's alias or Abaco id
          job_indexer_id: jobs-indexer
          job_launcher_id: launcher-proxy   # where jobs are created (ours; optional)

    and the secrets, never in ``config.yml``: ``_REACTOR_PIPELINES_JOB_MANAGER_NONCE``
    (and ``..._JOB_INDEXER_NONCE``, ``..._JOB_LAUNCHER_NONCE``), or a bearer key in
    ``_REACTOR_PIPELINES_API_KEY`` / ``$PIPELINEJOBS_KEY``. Every setting may also be
    given as ``_REACTOR_PIPELINES_<NAME>``; see :func:`reactor_settings`. A ``reactor``
    object (the Reactors SDK's) lends its ``settings`` and its ``nickname`` as the
    job's session. Keyword arguments are :class:`ManagedPipelineJob`'s and win.
    """

    def __init__(
        self,
        reactor: Any = None,
        data: Mapping[str, Any] | None = None,
        *,
        config_file: str | os.PathLike[str] = "config.yml",
        environ: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        settings = reactor_settings(reactor, config_file, environ)
        manager = settings.get("job_manager_id", MANAGER)
        indexer = settings.get("job_indexer_id", INDEXER)
        launcher = settings.get("job_launcher_id", LAUNCHER)
        nonces = {
            actor: settings[name]
            for actor, name in (
                (manager, "job_manager_nonce"),
                (indexer, "job_indexer_nonce"),
                (launcher, "job_launcher_nonce"),
            )
            if name in settings
        }
        options: dict[str, Any] = {
            # What the settings say, and nothing more: the environment they were read
            # from is the only one consulted ("" is no key).
            "url": settings.get("api_server", "http://127.0.0.1:8000"),
            "key": settings.get("api_key", ""),
            "nonces": nonces,
            "manager_id": manager,
            "indexer_id": indexer,
            "launcher_id": launcher,
            "pipeline_uuid": settings.get("pipeline_uuid"),
            "data": data,
        }
        nickname = getattr(reactor, "nickname", None)
        if nickname:
            options["session"] = str(nickname)
        options.update(kwargs)
        super().__init__(**options)
        #: The settings read (nonces and the key included: do not log it whole).
        self.settings = settings
