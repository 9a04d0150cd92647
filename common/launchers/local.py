"""The local launcher: the job's command as a subprocess on this machine.

``job_definition.command`` is an argv list — no shell, so nothing in it is
interpreted. The process runs in the job's archive directory with a minimal
environment plus ``job_definition.environment`` and the job's own coordinates:
``PIPELINEJOBS_JOB_UUID``, ``PIPELINEJOBS_JOB_TOKEN`` (its update token),
``PIPELINEJOBS_CALLBACK_URL`` (post ``&status=...`` there, like an Agave
notification) and ``PIPELINEJOBS_ARCHIVE_PATH``. Its stdout and stderr go to the
job's log file (``GET /jobs/<uuid>/log``). It runs in its own process group, so
killing it for exceeding ``maxRunTime`` kills whatever it started too.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping
from typing import Any

from common.errors import ValidationError
from common.launchers.base import Launch
from common.launchers.watched import Timeout, WatchedLauncher

#: Passed through from the launching process; everything else is left out.
INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR", "PYTHONPATH")


class LocalLauncher(WatchedLauncher):
    name = "local"
    system = "local"

    def check(self, definition: Mapping[str, Any], pipeline: Mapping[str, Any]) -> None:
        super().check(definition, pipeline)
        if not definition.get("command"):
            raise ValidationError(
                "the local launcher needs job_definition.command: a "
                "non-empty list of strings (argv; no shell)",
                path="job_definition/command",
            )

    def start(self, launch: Launch) -> subprocess.Popen[bytes]:
        definition = launch.job_definition
        self.check(definition, launch.pipeline)
        env = {k: os.environ[k] for k in INHERITED if k in os.environ}
        env.update(self.environment(launch))
        launch.archive_dir.mkdir(parents=True, exist_ok=True)
        with open(launch.log_path, "ab") as log:
            try:
                return subprocess.Popen(
                    definition["command"],
                    cwd=launch.archive_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                raise ValidationError(
                    f"cannot start {definition['command'][0]!r}: {exc.strerror}",
                    path="job_definition/command",
                ) from exc

    def wait(self, handle: subprocess.Popen[bytes], timeout: float | None) -> int:
        try:
            return handle.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise Timeout from exc

    def kill(self, handle: subprocess.Popen[bytes]) -> None:
        try:
            os.killpg(handle.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        handle.wait()

    def describe(self, handle: subprocess.Popen[bytes]) -> dict[str, Any]:
        return {"pid": handle.pid}
