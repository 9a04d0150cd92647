"""The launcher interface.

A launcher is handed a :class:`Launch` — the job, its pipeline, the compute
definition, the archive directory it must write to, the job's update token, and two
ways to report status: ``report`` (a message through the bus, for in-process
backends) and ``callback_url`` (the jobs-manager's HTTP endpoint with the job's uuid,
token and a nonce, for backends that run elsewhere and call back like Agave does).
It starts the compute and returns what it started (recorded on the job's ``run``
event). Status changes after that arrive only through those callbacks.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipelinejobs.errors import ValidationError

#: report(status, body) -> the execution id of the callback message.
Report = Callable[[str, Mapping[str, Any]], str]
#: The Agave macro a remote backend replaces with the job's status.
STATUS_MACRO = "${JOB_STATUS}"

_RUN_TIME = re.compile(r"(\d+):([0-5]\d):([0-5]\d)", re.ASCII)


def max_run_time(definition: Mapping[str, Any]) -> float | None:
    """Seconds allowed by ``maxRunTime`` (Agave's ``HH:MM:SS``), None when unset."""
    value = definition.get("maxRunTime")
    if value in (None, ""):
        return None
    match = _RUN_TIME.fullmatch(str(value))  # not match: "$" would allow a trailing newline
    if not match:
        raise ValidationError(
            f"maxRunTime must be HH:MM:SS, not {value!r}", path="job_definition/maxRunTime"
        )
    hours, minutes, seconds = (int(g) for g in match.groups())
    total = hours * 3600 + minutes * 60 + seconds
    if total <= 0:
        raise ValidationError(
            "maxRunTime must be longer than 00:00:00", path="job_definition/maxRunTime"
        )
    return float(total)


@dataclass(frozen=True)
class Launch:
    job: dict[str, Any]
    pipeline: dict[str, Any]
    job_definition: dict[str, Any]
    archive_path: str
    archive_dir: Path
    token: str
    report: Report
    #: The jobs-manager URL with uuid, token and nonce, ending ``&status=`` + the
    #: status; None for backends that report through the bus.
    callback_base: str | None
    log_path: Path
    #: What makes a launch of this job unique: the launcher-proxy execution that asked
    #: for it. A redelivery of that execution carries the same id, so the compute is
    #: found, not started twice. Empty: every launch is a new one.
    launch_id: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Everything but ``report`` (a function of this process), as JSON-ready data:
        what another process needs to start and watch this launch."""
        return {
            "job": self.job,
            "pipeline": self.pipeline,
            "job_definition": self.job_definition,
            "archive_path": self.archive_path,
            "archive_dir": str(self.archive_dir),
            "token": self.token,
            "callback_base": self.callback_base,
            "log_path": str(self.log_path),
            "launch_id": self.launch_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], report: Report) -> Launch:
        paths = {"archive_dir": Path(data["archive_dir"]), "log_path": Path(data["log_path"])}
        return cls(**{**data, **paths}, report=report)

    def callback_url(self, status: str = STATUS_MACRO) -> str:
        if self.callback_base is None:
            raise ValidationError("this launch has no callback URL")
        return f"{self.callback_base}&status={status}"

    def callback_body(self, status: str, **extra: Any) -> dict[str, Any]:
        """An ``agave_job_callback``-shaped body, as Agave would post it."""
        definition = self.job_definition
        return {
            "appId": str(definition.get("appId", "")),
            "owner": "pipelinejobs",
            "executionSystem": str(extra.pop("executionSystem", "local")),
            "archivePath": self.archive_path,
            "archiveSystem": str(self.job.get("archive_system", "")),
            "status": status,
            "inputs": definition.get("inputs") or {},
            "parameters": definition.get("parameters") or {},
            "_links": {},
            **extra,
        }


class Launcher(ABC):
    """Starts compute for a job."""

    name: str

    def check(self, definition: Mapping[str, Any], pipeline: Mapping[str, Any]) -> None:  # noqa: B027
        """Refuse a job definition this backend cannot run (ValidationError), before
        anything is created. Nothing by default."""

    def admit(self, definition: Mapping[str, Any], pipeline: Mapping[str, Any]) -> None:  # noqa: B027
        """The checks that need nothing but the message and its pipeline (no machine,
        no engine), run before a launch is even queued so that a refusal is the
        sender's 400. Nothing by default (``check`` runs them when the job is made)."""

    @abstractmethod
    def launch(self, launch: Launch) -> dict[str, Any]:
        """Start the job's compute; return a description of what was started.

        Raise a PipelineJobsError to refuse; the job is then failed with its message.
        """
