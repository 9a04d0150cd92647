"""Launchers that start a process they can watch: report, wait, enforce, report.

The local and Docker backends share this shape. The compute is started and watched
by a supervisor process of its own (:mod:`pipelinejobs.adapters.launchers.supervisor`), so that the
worker that launched it may die or restart without the job's end going unreported.
The supervisor posts RUNNING, waits for the compute to end — at most ``maxRunTime``,
after which it is killed and the job fails saying so — then posts FINISHED (exit
code 0) or FAILED with the exit code. If the backend loses sight of the compute
while waiting (``wait`` raises a PipelineJobsError: the Docker engine went away),
the job fails with that reason. Every report is an HTTP callback to the
jobs-manager, as a remote backend's would be, retried for ~15 minutes (a gateway
being redeployed when a job ends must not strand it in RUNNING).

What runs is the pipeline's component (:mod:`pipelinejobs.domain.components`), worked out from
the launch's pipeline and job definition wherever a launch is checked or started —
in the launcher-proxy and again in the supervisor — so no argv or image travels on
its own, and nothing a launch message says can become one.
"""

from __future__ import annotations

import logging
import threading
from abc import abstractmethod
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pipelinejobs.adapters.launchers.base import Launch, Launcher, max_run_time
from pipelinejobs.adapters.launchers.http_report import post_status
from pipelinejobs.adapters.launchers.supervisor import supervise
from pipelinejobs.domain import components
from pipelinejobs.domain.components import Compute
from pipelinejobs.errors import PipelineJobsError, ValidationError

log = logging.getLogger("pipelinejobs.launcher")


class Timeout(Exception):
    """The compute outlived its maxRunTime."""


class WatchedLauncher(Launcher):
    """Start, then watch in a thread: subclasses say how to start, wait and kill."""

    system = "local"
    #: The component kind this backend runs (pipelinejobs.domain.components).
    runs: str
    #: Threads waiting on this process's supervisors, so their exits are collected
    #: (tests join them to wait for a job's end; they are daemons otherwise).
    watchers: list[threading.Thread] = []
    #: Attempts at each status callback (back-off doubling up to a minute: ~15 min).
    report_attempts = 20

    def check(self, definition: Mapping[str, Any], pipeline: Mapping[str, Any]) -> None:
        """What every watched job must get right before it is created: a readable
        maxRunTime, no compute of its own, and variables its pipeline's component
        declares."""
        max_run_time(definition)
        self.compute(definition, pipeline)

    def compute(self, definition: Mapping[str, Any], pipeline: Mapping[str, Any]) -> Compute:
        """What the job runs: its pipeline's component of this backend's kind, with
        the launch's variables (a launch cannot say what runs: see
        pipelinejobs.domain.components)."""
        components.refuse_compute_fields(definition)
        component = components.runnable(pipeline, definition)
        if component is None or components.kind(component) != self.runs:
            raise ValidationError(
                f"the {self.name} launcher runs a pipeline's {self.runs} component, and "
                f"this job's pipeline has none to run (compute is defined by the pipeline)",
                path="job_definition/launcher",
            )
        return components.compute(component, definition)

    @staticmethod
    def environment(launch: Launch, compute: Compute) -> dict[str, str]:
        """The component's environment and variables, then the job's own coordinates
        (which no variable can shadow): its uuid, its update token, the URL to post
        statuses to, and its archive path."""
        return {
            **compute.environment,
            "PIPELINEJOBS_JOB_UUID": launch.job["uuid"],
            "PIPELINEJOBS_JOB_TOKEN": launch.token,
            "PIPELINEJOBS_CALLBACK_URL": launch.callback_base or "",
            "PIPELINEJOBS_ARCHIVE_PATH": launch.archive_path,
        }

    @abstractmethod
    def start(self, launch: Launch) -> Any:
        """Start the compute; a handle for wait/kill."""

    @abstractmethod
    def wait(self, handle: Any, timeout: float | None) -> int:
        """The exit code; raise Timeout when ``timeout`` seconds pass first."""

    @abstractmethod
    def kill(self, handle: Any) -> None:
        """Stop the compute now."""

    def describe(self, handle: Any) -> dict[str, Any]:
        """What was started, for the job's run event."""
        return {}

    def options(self) -> dict[str, Any]:
        """What a supervisor needs to make this launcher again (JSON-ready)."""
        return {}

    def finish(self, handle: Any, launch: Launch) -> None:  # noqa: B027 - optional hook
        """After the compute ended (e.g. collect logs, remove a container)."""

    def reap(self, started: Mapping[str, Any], log_path: Path) -> None:  # noqa: B027
        """Remove what a launch whose supervisor was lost left behind (``started``:
        what :meth:`describe` said of it). Nothing by default: a local compute is
        killed by the reaper itself (supervisor.claim_lost)."""

    def launch(self, launch: Launch) -> dict[str, Any]:
        limit = max_run_time(launch.job_definition)
        self.check(launch.job_definition, launch.pipeline)
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = supervise(self, launch)
        return {
            "backend": self.name,
            "callback": launch.callback_url().split("?", 1)[0],
            "maxRunTime": limit,
            **started,
        }

    def watch(
        self,
        handle: Any,
        launch: Launch,
        limit: float | None,
        stopped: Callable[[], str | None] = lambda: None,
    ) -> str | None:
        """Report RUNNING, wait for the end, report it; the last status reported (None
        if watching itself failed). Runs in the supervisor. ``stopped()`` says why the
        compute was killed on request, if it was (see supervisor.StopWatch): the job
        was already failed or reset by whoever asked, so the end is recorded as an
        ``update`` (STOPPED), not as a status the job could no longer take."""
        uuid = launch.job["uuid"]
        try:
            self._report(launch, "RUNNING")
            try:
                code = self.wait(handle, limit)
            except Timeout:
                self.kill(handle)
                text = launch.job_definition.get("maxRunTime")
                log.warning("job %s exceeded maxRunTime %s; killed", uuid, text)
                error = f"maxRunTime {text} exceeded: the job was killed"
                return self._report(launch, "FAILED", exitCode=None, error=error)
            except PipelineJobsError as exc:
                # The backend lost sight of the compute (the Docker engine went away):
                # fail the job saying so, rather than leave it RUNNING with nobody watching.
                log.error("job %s could not be watched: %s", uuid, exc.message)
                error = f"the job could not be watched to its end: {exc.message}"
                return self._report(launch, "FAILED", exitCode=None, error=error)
            finally:
                self.finish(handle, launch)
            reason = stopped()
            if reason is not None:
                body = launch.callback_body(
                    "STOPPED",
                    executionSystem=self.system,
                    exitCode=code,
                    error=f"the compute was stopped on request: {reason}",
                )
                url = f"{launch.callback_base}&event=update&status=STOPPED"
                post_status(url, body, attempts=self.report_attempts)
                return "STOPPED"
            if code == 0:
                return self._report(launch, "FINISHED", exitCode=0)
            error = f"the job exited with code {code}"
            return self._report(launch, "FAILED", exitCode=code, error=error)
        except Exception:  # a watcher must log, never die silently
            log.exception("watcher of job %s failed", uuid)
            return None

    def _report(self, launch: Launch, status: str, **extra: Any) -> str:
        body = launch.callback_body(status, executionSystem=self.system, **extra)
        post_status(launch.callback_url(status), body, attempts=self.report_attempts)
        return status
