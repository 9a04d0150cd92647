"""Launcher backends: how a job's compute is started.

One small interface (:class:`~common.launchers.base.Launcher`) and four backends:

========== ================================================================
inline     in-process: writes the definition's ``outputs``, reports through the bus
local      ``job_definition.command`` as a subprocess, reported over HTTP
docker     the pipeline's container image, through the Docker SDK
callback   nothing started: the job runs elsewhere and posts to a callback URL
========== ================================================================

Which one runs a job (:func:`choose`): the definition's ``launcher`` if it names one;
else ``launcher.backend`` unless that is ``auto``; else by what the job is — a
pipeline with a ``container`` component runs on docker, a definition with a
``command`` runs locally, one that only declares ``outputs``/``report`` runs inline,
and anything else (an Agave app, an Abaco actor, a service) is a callback job.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from common.config import Config
from common.errors import ValidationError
from common.launchers.base import Launch, Launcher
from common.launchers.watched import WatchedLauncher
from common.storage import LocalStorage

__all__ = [
    "BACKENDS",
    "Launch",
    "Launcher",
    "choose",
    "make_launcher",
    "make_watched",
    "needs_callback",
]

BACKENDS = ("inline", "local", "docker", "callback")


def is_container(component: Any) -> bool:
    """A ``container`` component: it has a ``repo`` and no actor ``id``."""
    return isinstance(component, Mapping) and "repo" in component and "id" not in component


def choose(config: Config, definition: Mapping[str, Any], pipeline: Mapping[str, Any]) -> str:
    """The backend that runs this job (see the module docstring)."""
    explicit = definition.get("launcher")
    if explicit is not None:
        if explicit not in BACKENDS:
            raise ValidationError(
                f"job_definition.launcher must be one of {', '.join(BACKENDS)}, not {explicit!r}",
                path="job_definition/launcher",
                allowed=list(BACKENDS),
            )
        return str(explicit)
    if config.launcher.backend != "auto":
        return config.launcher.backend
    if any(is_container(c) for c in pipeline.get("components") or ()):
        return "docker"
    if "command" in definition:
        return "local"
    if "outputs" in definition or "report" in definition:
        return "inline"
    return "callback"


def needs_callback(name: str) -> bool:
    """Whether the backend reports over HTTP (and so needs a nonce'd callback URL)."""
    return name != "inline"


def make_watched(name: str, options: Mapping[str, Any]) -> WatchedLauncher:
    """A local or docker launcher from its ``options()`` (in a supervisor process)."""
    if name == "local":
        from common.launchers.local import LocalLauncher

        return LocalLauncher()
    if name == "docker":
        from common.launchers.docker import DockerLauncher

        return DockerLauncher(
            str(options["docker_url"]),
            timeout=float(options["timeout"]),
            user=str(options.get("user", "")),
        )
    raise ValidationError(f"no watched launcher {name!r}", allowed=["local", "docker"])


def make_launcher(name: str, config: Config, storage: LocalStorage) -> Launcher:
    if name == "inline":
        from common.launchers.inline import InlineLauncher

        return InlineLauncher(storage)
    if name == "local":
        from common.launchers.local import LocalLauncher

        return LocalLauncher()
    if name == "docker":
        from common.launchers.docker import DockerLauncher

        return DockerLauncher(config.launcher.docker_url, user=config.launcher.docker_user)
    from common.launchers.callback import CallbackLauncher

    return CallbackLauncher()
