"""The local launcher: a pipeline's ``command`` component as a subprocess on this machine.

What runs is the component's argv, registered by an admin, with the launch's declared
variables in place (see :mod:`pipelinejobs.domain.components`) — no shell, so nothing in it is
interpreted. The process runs in the job's archive directory with a minimal
environment: a few settings of the launching process (``INHERITED``), the
component's environment and variables, and the job's own coordinates:
``PIPELINEJOBS_JOB_UUID``, ``PIPELINEJOBS_JOB_TOKEN`` (its update token),
``PIPELINEJOBS_CALLBACK_URL`` (post ``&status=...`` there, like an Agave
notification) and ``PIPELINEJOBS_ARCHIVE_PATH``. Its stdout and stderr go to the
job's log file (``GET /jobs/<uuid>/log``). It runs in its own process group, so
killing it for exceeding ``maxRunTime`` kills whatever it started too.

Who it runs as (``launcher.run_as``): a worker running as root does not start jobs as
root unless the setting says ``root`` (the embedded mode's default: whoever started
it). Set to a user (``nobody``), a root worker starts each job as that user, with
its primary group and no others, after giving it the job's archive directory and
log; a worker that is not root and not that user refuses, as it cannot switch.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
from collections.abc import Mapping
from typing import Any

from pipelinejobs.adapters.launchers.base import Launch
from pipelinejobs.adapters.launchers.watched import Timeout, WatchedLauncher
from pipelinejobs.domain import components
from pipelinejobs.errors import ConfigError, LauncherError

#: Passed through from the launching process; everything else is left out.
INHERITED = ("PATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR", "PYTHONPATH")


class LocalLauncher(WatchedLauncher):
    name = "local"
    system = "local"
    runs = components.COMMAND

    def __init__(self, *, run_as: str = "") -> None:
        #: ``launcher.run_as`` (as Config.run_as reads it): "", "root" or a user.
        self.run_as = run_as.strip()

    def account(self) -> pwd.struct_passwd | None:
        """The user to start jobs as, when it is not this process's own (None: as
        itself). Raises ConfigError when that would be root without ``root`` allowed,
        or a user this process cannot become."""
        me = os.geteuid()
        if self.run_as in ("", "root"):
            if me == 0 and self.run_as != "root":
                raise ConfigError(
                    "the local launcher does not run jobs as root: this worker runs as root "
                    "and launcher.run_as is empty. Set launcher.run_as to the user jobs "
                    "should run as (e.g. nobody), or to root to allow root",
                    setting="launcher.run_as",
                )
            return None
        try:
            user = (
                pwd.getpwuid(int(self.run_as))
                if self.run_as.isdigit()
                else pwd.getpwnam(self.run_as)
            )
        except KeyError:
            raise ConfigError(
                f"launcher.run_as is {self.run_as!r}, which is no user on this machine",
                setting="launcher.run_as",
            ) from None
        if user.pw_uid == me:
            return None
        if me != 0:
            raise ConfigError(
                f"launcher.run_as is {self.run_as!r}, but this worker runs as uid {me} and "
                f"cannot start jobs as another user; run it as root (it then starts each "
                f"job as {self.run_as}) or as {self.run_as}",
                setting="launcher.run_as",
            )
        return user

    def check(self, definition: Mapping[str, Any], pipeline: Mapping[str, Any]) -> None:
        super().check(definition, pipeline)
        self.account()

    def start(self, launch: Launch) -> subprocess.Popen[bytes]:
        compute = self.compute(launch.job_definition, launch.pipeline)
        argv = compute.argv or []
        user = self.account()
        env = {k: os.environ[k] for k in INHERITED if k in os.environ}
        env.update(self.environment(launch, compute))
        launch.archive_dir.mkdir(parents=True, exist_ok=True)
        switch: dict[str, Any] = {}
        if user is not None:
            # The job must write its outputs and nothing else of the service's.
            os.chown(launch.archive_dir, user.pw_uid, user.pw_gid)
            env["HOME"] = user.pw_dir
            switch = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
        with open(launch.log_path, "ab") as log:
            if user is not None:
                os.fchown(log.fileno(), user.pw_uid, user.pw_gid)
            try:
                return subprocess.Popen(
                    argv,
                    cwd=launch.archive_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    **switch,
                )
            except OSError as exc:
                raise LauncherError(
                    f"cannot start {argv[0]!r}, the command of pipeline "
                    f"{launch.pipeline.get('uuid', '')}: {exc.strerror}",
                    pipeline_uuid=launch.pipeline.get("uuid"),
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

    def options(self) -> dict[str, Any]:
        return {"run_as": self.run_as}
