"""The launcher interface.

A launcher is handed a :class:`Launch` — the job, its pipeline, the compute
definition, the archive path it must write to, and a ``report`` callable that posts
a status to the jobs-manager exactly as a remote backend's callback would — and
starts the compute. It returns what it started (recorded on the job's ``run``
event). Status changes after that arrive only through ``report``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

#: report(status, body) -> the execution id of the callback message.
Report = Callable[[str, Mapping[str, Any]], str]


@dataclass(frozen=True)
class Launch:
    job: dict[str, Any]
    pipeline: dict[str, Any]
    job_definition: dict[str, Any]
    archive_path: str
    report: Report


class Launcher(ABC):
    """Starts compute for a job."""

    name: str

    @abstractmethod
    def launch(self, launch: Launch) -> dict[str, Any]:
        """Start the job's compute; return a description of what was started.

        Raise a PipelineJobsError to refuse; the job is then failed with its message.
        """
