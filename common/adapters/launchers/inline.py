"""The inline launcher: compute that finishes inside the launch, reported by callback.

It stands in for a remote backend with none of the machinery: it writes the files
the job definition declares under ``outputs`` (``{"relative/path": "content"}``) into
the archive path, then reports RUNNING and FINISHED to the jobs-manager through the
bus — the same callbacks, with the same token, that an Agave job would post. A job
definition with ``"fail": "reason"`` reports FAILED instead, for trying out failures;
one with ``"report": ["RUNNING"]`` reports only those statuses, leaving the rest to be
posted by hand — as a long compute's own callbacks would be later.
"""

from __future__ import annotations

from typing import Any

from pipelinejobs.adapters.launchers.base import Launch, Launcher
from pipelinejobs.adapters.storage import LocalStorage
from pipelinejobs.errors import ValidationError


class InlineLauncher(Launcher):
    name = "inline"

    def __init__(self, storage: LocalStorage) -> None:
        self.storage = storage

    def launch(self, launch: Launch) -> dict[str, Any]:
        definition = launch.job_definition
        outputs = definition.get("outputs") or {}
        if not isinstance(outputs, dict) or not all(isinstance(v, str) for v in outputs.values()):
            raise ValidationError(
                "job_definition.outputs must map relative paths to text",
                path="job_definition/outputs",
            )
        self.storage.makedirs(launch.archive_path)
        for relative, content in outputs.items():
            self.storage.write(launch.archive_path, relative, content.encode())
        body = {
            "appId": str(definition.get("appId", "")),
            "owner": "pipelinejobs",
            "executionSystem": "inline",
            "archivePath": launch.archive_path,
            "archiveSystem": self.storage.system,
            "inputs": definition.get("inputs") or {},
            "parameters": definition.get("parameters") or {},
            "_links": {},
        }
        final = "FAILED" if definition.get("fail") else "FINISHED"
        statuses = definition.get("report", ["RUNNING", final])
        if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses):
            raise ValidationError(
                "job_definition.report must be a list of Agave statuses",
                path="job_definition/report",
            )
        callbacks = []
        for status in statuses:
            extra = (
                {"error": str(definition["fail"])}
                if status == "FAILED" and (definition.get("fail"))
                else {}
            )
            callbacks.append(launch.report(status, {**body, "status": status, **extra}))
        return {"backend": self.name, "outputs": sorted(outputs), "callbacks": callbacks}
