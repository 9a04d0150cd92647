"""The docker launcher: a pipeline's ``container`` component, run through the Docker SDK.

What runs (:func:`image_of`, :meth:`WatchedLauncher.compute`) is only ever the
pipeline's container component, registered by an admin: its ``repo`` (pinned by
``@hash`` when it has one), with ``options.command`` / ``options.entrypoint`` (argv;
the image's own when absent), ``options.environment`` and the launch's values of
``options.variables`` in place (see :mod:`pipelinejobs.domain.components`). A launch cannot name
an image. An Agave app's ``parameters.CONTAINER_IMAGE`` is not run here either: an
``agave_app`` (like an ``abaco_actor`` or a ``service``) is a callback job whose
image runs on the system that app is deployed to, and treating its parameters as
something to run on this engine would let whoever registers an app choose what runs.

The container runs detached, like the local launcher's process (both are started
and watched by a supervisor process, common/launchers/supervisor.py): the job's archive
directory is bind-mounted read-write at ``/archive`` and is its working directory;
its command is the component's (argv, no shell) or the image's own; its
environment is the component's environment and variables plus the job's coordinates
(``PIPELINEJOBS_JOB_UUID``, ``..._JOB_TOKEN``, ``..._CALLBACK_URL``,
``..._ARCHIVE_PATH``); it is labelled ``pipelinejobs.job=<uuid>`` so an operator
can find it. A missing image is pulled once, then the create is retried. The
job's supervisor (common/launchers/supervisor.py, watching as watched.py says)
reports, enforces ``maxRunTime`` by killing the container, and at the end the
container's stdout and stderr are appended to the job's log and the container is
removed.

Each job gets its own client, made when it starts and closed when its watch ends:
the watch holds a connection open for the whole of ``wait``, and one client per job
keeps a long wait from sharing a connection pool with other jobs. The API version is
fixed, so making a client touches nothing and no request is spent negotiating it.
Every engine failure becomes a :class:`~pipelinejobs.errors.LauncherError` whose message
names the engine, so a job that cannot start fails saying why.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors
import docker.utils
import requests
import urllib3

from pipelinejobs.adapters.launchers.base import Launch
from pipelinejobs.adapters.launchers.watched import Timeout, WatchedLauncher
from pipelinejobs.domain import components
from pipelinejobs.errors import LauncherError, LauncherUnavailable

log = logging.getLogger("pipelinejobs.launcher")

#: The Engine API version spoken (Docker 24+); fixed, so no version request is made.
API_VERSION = "1.43"
#: Where the job's archive directory appears inside the container.
ARCHIVE_MOUNT = "/archive"
#: The label that ties a container to its job.
JOB_LABEL = "pipelinejobs.job"


def image_of(definition: Mapping[str, Any], pipeline: Mapping[str, Any]) -> str | None:
    """The image a job runs: its pipeline's container component's; None without one."""
    component = components.runnable(pipeline, definition)
    if component is None or components.kind(component) != components.CONTAINER:
        return None
    return components.image_of(component)


@dataclass
class Running:
    """A started container, the client that watches it, and the image it runs."""

    client: Any
    container: Any
    image: str
    #: The engine went away during the wait: :meth:`DockerLauncher.finish` waits for
    #: it to come back before giving the container up.
    lost: bool = False


class DockerLauncher(WatchedLauncher):
    """Runs the job's image on the Docker engine at ``docker_url``."""

    name = "docker"
    system = "docker"
    runs = components.CONTAINER
    #: Seconds a supervisor that lost the engine mid-wait keeps trying to collect the
    #: container's output and remove it (an engine restart takes seconds).
    reconnect_window = 300.0

    def __init__(self, docker_url: str, *, timeout: float = 60.0, user: str = "") -> None:
        self.docker_url = docker_url
        #: Seconds any engine call but ``wait`` and pulls may take.
        self.timeout = timeout
        #: ``launcher.docker_user``: "" for this process's uid:gid, "image" for the
        #: image's own user, else what Docker is given.
        self.user = user

    def container_user(self) -> str | None:
        """The ``user`` a container is created with (None: the image's own)."""
        if self.user == "image":
            return None
        return self.user or f"{os.getuid()}:{os.getgid()}"

    # -- the engine ----------------------------------------------------------------------

    def connect(self) -> Any:
        """A new client for the engine (no request is made)."""
        with self.engine("connecting"):
            return docker.DockerClient(
                base_url=self.docker_url, version=API_VERSION, timeout=self.timeout
            )

    @contextmanager
    def engine(self, doing: str) -> Iterator[None]:
        """Translate what the SDK raises while ``doing`` something into a LauncherError."""
        try:
            yield
        except docker.errors.APIError as exc:
            reason = exc.explanation or str(exc)
            raise LauncherError(
                f"the Docker engine at {self.docker_url} refused {doing}: {reason}",
                engine=self.docker_url,
                status=exc.status_code,
            ) from exc
        except (
            requests.exceptions.ConnectionError,
            # The connection closed mid-answer: an engine killed during a wait.
            requests.exceptions.ChunkedEncodingError,
        ) as exc:
            raise LauncherUnavailable(
                f"the Docker engine at {self.docker_url} is not reachable ({doing}): "
                f"{root_cause(exc)}",
                engine=self.docker_url,
            ) from exc
        except requests.exceptions.Timeout as exc:
            raise LauncherUnavailable(
                f"the Docker engine at {self.docker_url} did not answer within "
                f"{self.timeout:g}s ({doing})",
                engine=self.docker_url,
            ) from exc
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise LauncherError(
                f"the Docker engine at {self.docker_url} failed {doing}: {exc}",
                engine=self.docker_url,
            ) from exc

    # -- WatchedLauncher -----------------------------------------------------------------

    def start(self, launch: Launch) -> Running:
        compute = self.compute(launch.job_definition, launch.pipeline)
        image = compute.image
        assert image is not None  # a container component always has one
        launch.archive_dir.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {
            "command": compute.argv,
            "environment": self.environment(launch, compute),
            "volumes": {str(launch.archive_dir): {"bind": ARCHIVE_MOUNT, "mode": "rw"}},
            "working_dir": ARCHIVE_MOUNT,
            "labels": {JOB_LABEL: launch.job["uuid"]},
            "detach": True,
        }
        if compute.entrypoint is not None:
            options["entrypoint"] = compute.entrypoint
        if self.container_user() is not None:
            options["user"] = self.container_user()
        client = self.connect()
        try:
            with self.engine(f"creating a container of {image}"):
                container = self._create(client, image, options)
            try:
                with self.engine(f"starting container {container.id[:12]} of {image}"):
                    container.start()
            except LauncherError:
                self._remove(container)
                raise
        except BaseException:
            client.close()
            raise
        log.info("job %s: container %s of %s started", launch.job["uuid"], container.id, image)
        return Running(client, container, image)

    def wait(self, handle: Running, timeout: float | None) -> int:
        try:
            with self.engine(f"waiting for container {handle.container.id[:12]}"):
                try:
                    result = handle.container.wait(timeout=timeout)
                except requests.exceptions.ReadTimeout as exc:  # not even the headers came
                    raise Timeout from exc
                except requests.exceptions.ConnectionError as exc:
                    # The engine sends the headers at once and the body when the
                    # container exits, so a timeout usually surfaces reading the body.
                    if any(isinstance(a, urllib3.exceptions.ReadTimeoutError) for a in exc.args):
                        raise Timeout from exc
                    raise
        except LauncherUnavailable:
            handle.lost = True
            raise
        if result.get("Error"):
            log.warning("container %s: %s", handle.container.id[:12], result["Error"])
        return int(result["StatusCode"])

    def kill(self, handle: Running) -> None:
        with self.engine(f"killing container {handle.container.id[:12]}"):
            try:
                handle.container.kill()
            except docker.errors.APIError as exc:
                if exc.status_code not in (404, 409):  # 409: it is no longer running
                    raise

    def finish(self, handle: Running, launch: Launch) -> None:
        """Keep the container's output in the job's log, then remove it. Errors are
        logged, not raised: the job's final status must still be reported.

        If the engine went away during the wait (its status is reported already),
        the container usually still runs — podman's and Docker's containers outlive
        the API service, which a restart brings back on the same socket — so the
        output and the removal are tried again for :attr:`reconnect_window` seconds
        before the container is left, labelled with its job, for an operator."""
        deadline = time.monotonic() + (self.reconnect_window if handle.lost else 0.0)
        delay, kept = 1.0, False
        try:
            while True:
                try:
                    if not kept:
                        self._keep_output(handle, launch)
                        kept = True
                    self._remove(handle.container, raise_unavailable=True)
                    return
                except LauncherUnavailable as exc:
                    if time.monotonic() + delay > deadline:
                        log.error("job %s: container %s is left on the engine (label %s=%s): %s",
                                  launch.job["uuid"], handle.container.id[:12], JOB_LABEL,
                                  launch.job["uuid"], exc.message)  # fmt: skip
                        return
                    log.warning("%s; trying again in %g s", exc.message, delay)
                    time.sleep(delay)
                    delay = min(delay * 2, 30.0)
        finally:
            handle.client.close()

    def _keep_output(self, handle: Running, launch: Launch) -> None:
        """Append the container's stdout and stderr to the job's log (raises only
        LauncherUnavailable: the engine may come back)."""
        try:
            with self.engine(f"reading the logs of container {handle.container.id[:12]}"):
                output = handle.container.logs(stdout=True, stderr=True)
            with open(launch.log_path, "ab") as out:
                out.write(output)
        except LauncherUnavailable:
            raise
        except (LauncherError, OSError) as exc:
            log.error("job %s: its output is lost: %s", launch.job["uuid"], exc)

    def reap(self, started: Mapping[str, Any], log_path: Path) -> None:
        """The container of a launch whose supervisor was lost: nobody will report its
        end, and its job is failed, so its output is appended to the job's log and it
        is removed (killed first if it still runs). Gone already: nothing to do."""
        short = str(started.get("container") or "")
        if not short:
            return
        client = self.connect()
        try:
            with self.engine(f"finding container {short}"):
                try:
                    container = client.containers.get(short)
                except docker.errors.NotFound:
                    return
            with self.engine(f"reading the logs of container {short}"):
                output = container.logs(stdout=True, stderr=True)
            with open(log_path, "ab") as out:
                out.write(output)
            with self.engine(f"removing container {short}"):
                container.remove(force=True)
            log.warning("container %s of a lost launch removed", short)
        finally:
            client.close()

    def describe(self, handle: Running) -> dict[str, Any]:
        return {"container": handle.container.id[:12], "image": handle.image}

    def options(self) -> dict[str, Any]:
        return {"docker_url": self.docker_url, "timeout": self.timeout, "user": self.user}

    # -- helpers -------------------------------------------------------------------------

    def _create(self, client: Any, image: str, options: dict[str, Any]) -> Any:
        """Create the container, pulling its image first if the engine lacks it."""
        try:
            return client.containers.create(image, **options)
        except docker.errors.ImageNotFound:
            log.info("pulling %s", image)
            self._pull(client, image)
            return client.containers.create(image, **options)

    def _pull(self, client: Any, image: str) -> None:
        """Pull ``image``, reading the engine's progress to its end. An engine answers
        a pull with 200 before it knows whether the pull works, and says how it failed
        in the stream (podman: "manifest unknown"); the SDK's ``images.pull`` drops
        that, leaving only the "No such image" of the create that follows."""
        repository, tag = docker.utils.parse_repository_tag(image)
        for event in client.api.pull(repository, tag=tag or "latest", stream=True, decode=True):
            if isinstance(event, dict) and event.get("error"):
                raise LauncherError(
                    f"the Docker engine at {self.docker_url} could not pull {image}: "
                    f"{event['error']}",
                    engine=self.docker_url,
                )

    def _remove(self, container: Any, *, raise_unavailable: bool = False) -> None:
        """Remove a container that is done with; a failure is logged (it only costs
        disk on the engine) and the container can be found by its job label."""
        try:
            with self.engine(f"removing container {container.id[:12]}"):
                container.remove(force=True)
        except LauncherUnavailable:
            if raise_unavailable:
                raise
            log.error("the Docker engine at %s is gone: container %s is left",
                      self.docker_url, container.id[:12])  # fmt: skip
        except LauncherError as exc:
            log.error("%s", exc.message)


def root_cause(exc: BaseException) -> str:
    """The OS error under a connection error ("[Errno 111] Connection refused"), or the
    error itself: urllib3's wrapping makes the message hard to read."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        current = stack.pop()
        if not isinstance(current, BaseException) or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return f"[Errno {current.errno}] {current.strerror}"
        stack.extend([current.__cause__, current.__context__, getattr(current, "reason", None)])
        stack.extend(current.args)
    return str(exc)
