"""Launcher backends: how a job's compute is started.

One small interface (:class:`~pipelinejobs.adapters.launchers.base.Launcher`) and five backends:

========== ================================================================
inline     in-process: writes the definition's ``outputs``, reports through the bus
local      the pipeline's ``command`` component as a subprocess, reported over HTTP
docker     the pipeline's ``container`` component, through the Docker SDK
slurm      the pipeline's ``command`` component declaring ``slurm``, as a batch job
callback   nothing started: the job runs elsewhere and posts to a callback URL
========== ================================================================

What a local, docker or slurm job runs is its pipeline's component, never the launch
(see :mod:`pipelinejobs.domain.components`); so which backend a job *can* run on
follows from the pipeline: ``local`` needs a command component, ``slurm`` one that
declares ``"slurm": {...}`` (and such a component runs nowhere else but inline and
callback: its admin said where it runs), ``docker`` a container one, and ``inline``
and ``callback`` (which run nothing of the pipeline's) suit any.

Which one runs a job (:func:`choose`): the definition's ``launcher`` if it names one;
else ``launcher.backend`` unless that is ``auto``; else by what the pipeline runs — a
command component locally (on Slurm when it declares ``slurm``), a container
component on docker — or, for a pipeline
whose jobs run elsewhere, inline when the definition only declares
``outputs``/``report`` and as a callback job otherwise. A choice the pipeline's
component cannot run on is a 400; one the deployment does not allow
(``launcher.backends``) is a 403. Both are refused before anything is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pipelinejobs.adapters.launchers.base import Launch, Launcher
from pipelinejobs.adapters.launchers.watched import WatchedLauncher
from pipelinejobs.adapters.storage import LocalStorage
from pipelinejobs.config import LAUNCHER_BACKENDS, Config
from pipelinejobs.domain import components
from pipelinejobs.errors import PermissionDenied, ValidationError

if TYPE_CHECKING:  # pragma: no cover
    from pipelinejobs.adapters.launchers.slurm import SlurmLauncher

__all__ = [
    "BACKENDS",
    "Launch",
    "Launcher",
    "choose",
    "make_launcher",
    "make_slurm",
    "make_watched",
    "needs_callback",
    "runnable_on",
    "stop_compute",
]

BACKENDS = LAUNCHER_BACKENDS
#: Backends whose compute a supervisor process of PipelineJobs' starts and watches.
WATCHED = ("local", "docker")
#: The backend that runs each runnable component kind.
RUNS = {components.COMMAND: "local", components.CONTAINER: "docker"}


def backend_of(component: Mapping[str, Any]) -> str:
    """The backend that runs a runnable component: its kind's, or slurm for a command
    component declaring ``slurm``."""
    if components.kind(component) == components.COMMAND and "slurm" in component:
        return "slurm"
    return RUNS[components.kind(component)]


def runnable_on(component: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The backends a job of ``component`` (a pipeline's runnable one, or None) can
    run on."""
    if component is None:
        return ("inline", "callback")
    return (backend_of(component), "inline", "callback")


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
        name, source = backend_of(component), ""
    elif "outputs" in definition or "report" in definition:
        name, source = "inline", ""
    else:
        name, source = "callback", ""
    possible = runnable_on(component)
    if name not in possible:
        if component is None:
            what = "no command or container component"
        elif backend_of(component) == "slurm":
            what = "its command component declaring slurm"
        else:
            what = f"its {components.kind(component)} component"
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
    if name == "slurm":
        return make_slurm(config)
    from pipelinejobs.adapters.launchers.callback import CallbackLauncher

    return CallbackLauncher()


def make_slurm(config: Config) -> SlurmLauncher:
    """The slurm launcher of this deployment (nothing is asked of Slurm yet)."""
    from pipelinejobs.adapters.launchers.slurm import SlurmLauncher

    return SlurmLauncher(config.launcher, config.log_dir)


def stop_compute(config: Config, job: Mapping[str, Any], reason: str) -> list[str]:
    """Stop the compute of ``job`` where PipelineJobs runs it; what was asked to stop:
    the launches whose supervisor was asked (local, docker), or the Slurm batch jobs
    cancelled (``slurm:<id>``). Nothing for a job that runs elsewhere."""
    backend = (job.get("launch") or {}).get("backend")
    if backend in WATCHED:
        from pipelinejobs.adapters.launchers.supervisor import request_stop

        return request_stop(config.log_dir, str(job["uuid"]), reason)
    if backend == "slurm":
        return [f"slurm:{job_id}" for job_id in make_slurm(config).stop(job)]
    return []
