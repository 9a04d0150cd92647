"""Launcher backends: how a job's compute is started.

One small interface (:class:`~pipelinejobs.adapters.launchers.base.Launcher`) and four backends:

========== ================================================================
inline     in-process: writes the definition's ``outputs``, reports through the bus
local      the pipeline's ``command`` component as a subprocess, reported over HTTP
docker     the pipeline's ``container`` component, through the Docker SDK
callback   nothing started: the job runs elsewhere and posts to a callback URL
========== ================================================================

What a local or docker job runs is its pipeline's component, never the launch (see
:mod:`pipelinejobs.domain.components`); so which backend a job *can* run on follows from the
pipeline: ``local`` needs a command component, ``docker`` a container one, and
``inline`` and ``callback`` (which run nothing of the pipeline's) suit any.

Which one runs a job (:func:`choose`): the definition's ``launcher`` if it names one;
else ``launcher.backend`` unless that is ``auto``; else by what the pipeline runs — a
command component locally, a container component on docker — or, for a pipeline
whose jobs run elsewhere, inline when the definition only declares
``outputs``/``report`` and as a callback job otherwise. A choice the pipeline's
component cannot run on is a 400; one the deployment does not allow
(``launcher.backends``) is a 403. Both are refused before anything is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipelinejobs.adapters.launchers.base import Launch, Launcher
from pipelinejobs.adapters.launchers.watched import WatchedLauncher
from pipelinejobs.adapters.storage import LocalStorage
from pipelinejobs.config import LAUNCHER_BACKENDS, Config
from pipelinejobs.domain import components
from pipelinejobs.errors import PermissionDenied, ValidationError

__all__ = [
    "BACKENDS",
    "Launch",
    "Launcher",
    "choose",
    "make_launcher",
    "make_watched",
    "needs_callback",
    "runnable_on",
]

BACKENDS = LAUNCHER_BACKENDS
#: The backend that runs each runnable component kind.
RUNS = {components.COMMAND: "local", components.CONTAINER: "docker"}


def runnable_on(component: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The backends a job of ``component`` (a pipeline's runnable one, or None) can
    run on."""
    if component is None:
        return ("inline", "callback")
    return (RUNS[components.kind(component)], "inline", "callback")


def choose(config: Config, definition: Mapping[str, Any], pipeline: Mapping[str, Any]) -> str:
    """The backend that runs this job (see the module docstring)."""
    component = components.runnable(pipeline, definition)
    explicit = definition.get("launcher")
    if explicit is not None:
        if explicit not in BACKENDS:
            raise ValidationError(
                f"job_definition.launcher must be one of {', '.join(BACKENDS)}, not {explicit!r}",
                path="job_definition/launcher",
                allowed=list(BACKENDS),
            )
        name, source = str(explicit), "job_definition.launcher"
    elif config.launcher.backend != "auto":
        name, source = config.launcher.backend, "the setting launcher.backend"
    elif component is not None:
        name, source = RUNS[components.kind(component)], ""
    elif "outputs" in definition or "report" in definition:
        name, source = "inline", ""
    else:
        name, source = "callback", ""
    possible = runnable_on(component)
    if name not in possible:
        what = (
            f"its {components.kind(component)} component"
            if component is not None
            else "no command or container component"
        )
        raise ValidationError(
            f"{source} asks for the {name} backend, but this pipeline has {what}, which runs "
            f"on: {', '.join(possible)} (what a job runs is its pipeline's component)",
            path="job_definition/launcher" if explicit is not None else None,
            allowed=list(possible),
        )
    if name not in config.allowed_backends:
        raise PermissionDenied(
            f"this deployment does not run jobs on the {name} backend; launcher.backends "
            f"allows: {', '.join(config.allowed_backends)}",
            backend=name,
            allowed=list(config.allowed_backends),
        )
    return name


def needs_callback(name: str) -> bool:
    """Whether the backend reports over HTTP (and so needs a nonce'd callback URL)."""
    return name != "inline"


def make_watched(name: str, options: Mapping[str, Any]) -> WatchedLauncher:
    """A local or docker launcher from its ``options()`` (in a supervisor process)."""
    if name == "local":
        from pipelinejobs.adapters.launchers.local import LocalLauncher

        return LocalLauncher(run_as=str(options.get("run_as", "")))
    if name == "docker":
        from pipelinejobs.adapters.launchers.docker import DockerLauncher

        return DockerLauncher(
            str(options["docker_url"]),
            timeout=float(options["timeout"]),
            user=str(options.get("user", "")),
        )
    raise ValidationError(f"no watched launcher {name!r}", allowed=["local", "docker"])


def make_launcher(name: str, config: Config, storage: LocalStorage) -> Launcher:
    if name == "inline":
        from pipelinejobs.adapters.launchers.inline import InlineLauncher

        return InlineLauncher(storage)
    if name == "local":
        from pipelinejobs.adapters.launchers.local import LocalLauncher

        return LocalLauncher(run_as=config.run_as)
    if name == "docker":
        from pipelinejobs.adapters.launchers.docker import DockerLauncher

        return DockerLauncher(config.launcher.docker_url, user=config.launcher.docker_user)
    from pipelinejobs.adapters.launchers.callback import CallbackLauncher

    return CallbackLauncher()
