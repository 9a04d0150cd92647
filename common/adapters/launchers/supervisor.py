"""The supervisor: a process of its own that starts, watches and reports one job.

A watcher thread dies with the process that launched the job — a worker killed,
restarted or recycled by its pool, ``serve`` stopped with Ctrl-C — and then nobody
reports the compute's end: the job stays RUNNING forever. So the launching process
hands the launch to a new Python process running :func:`main`, in a session of its
own, which outlives it: the supervisor starts the compute, answers the
launcher with one JSON line on its stdout (``{"started": {...}}`` or ``{"error":
{...}}``), then watches the compute to its end and posts the statuses itself (see
:mod:`pipelinejobs.adapters.launchers.watched`). Its own log is ``<log_dir>/<uuid>.supervisor.log``.
It does not outlive the machine, nor a container or cgroup stopped as a whole.

Launching is idempotent: before starting anything the supervisor creates
``<log_dir>/<uuid>.<launch_id>.launch`` exclusively. A redelivered launch (same job,
same launcher-proxy execution) finds it and answers with what the first one started,
waiting while that one is still starting; nothing is started twice. If the first
supervisor died while starting (seen by its pid on the same machine; a record from
another machine sharing the log directory is waited on for up to 10 minutes), the
launch is refused rather than risk a second compute: a new launch (a new execution)
is needed.

Stopping on request: :func:`request_stop` (the jobs-manager, when a person fails or
resets the job) leaves ``<uuid>.<launch_id>.stop`` beside the record; the
supervisor's :class:`StopWatch` sees it within half a second and kills the compute,
and the end is recorded as an ``update`` (STOPPED). Both sides only need the log
directory, which every gateway and worker already shares.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelinejobs.adapters.launchers.base import Launch, max_run_time
from pipelinejobs.errors import (
    ConfigError,
    LauncherError,
    LauncherUnavailable,
    PipelineJobsError,
    ValidationError,
)

if TYPE_CHECKING:
    from pipelinejobs.adapters.launchers.watched import WatchedLauncher

log = logging.getLogger("pipelinejobs.launcher")

#: Errors a start may raise that the launching process re-raises as themselves.
ERRORS = {
    cls.__name__: cls for cls in (ValidationError, ConfigError, LauncherError, LauncherUnavailable)
}
#: How long a redelivered launch waits for the first one to finish starting.
STARTING_WAIT = 600.0
ROOT = Path(__file__).resolve().parents[2]
HOST = socket.gethostname()
_BOOT = Path("/proc/sys/kernel/random/boot_id")
BOOT_ID = _BOOT.read_text().strip() if _BOOT.exists() else ""
ENTRY = "import sys; from pipelinejobs.adapters.launchers.supervisor import main; sys.exit(main())"


# -- the launching process's side -------------------------------------------------------------


def supervise(launcher: WatchedLauncher, launch: Launch) -> dict[str, Any]:
    """Start ``launch`` under a supervisor; what it started (or raise its refusal)."""
    spec = {"launcher": launcher.name, "options": launcher.options(), "launch": launch.to_dict()}
    diagnostics = launch.log_path.with_name(f"{launch.job['uuid']}.supervisor.log")
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    with open(diagnostics, "ab") as errors:
        proc = subprocess.Popen(
            # Not ``-m``: the package imports this module, and runpy would run a second
            # copy of it. The job's uuid is there for ps, and read by nobody.
            [sys.executable, "-c", ENTRY, "supervisor", launch.job["uuid"]],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=errors,
            env={**os.environ, "PYTHONPATH": path},
            start_new_session=True,  # not in the worker's process group: it outlives it
        )
    assert proc.stdin is not None and proc.stdout is not None
    with proc.stdin:
        proc.stdin.write(json.dumps(spec).encode())
    with proc.stdout:
        line = proc.stdout.readline()
    try:
        answer = json.loads(line) if line.strip() else {}
    except ValueError:
        answer = {}
    if "started" not in answer:
        proc.wait(30)
        if "error" in answer:
            error = answer["error"]
            cls = ERRORS.get(str(error.pop("error", "")), LauncherError)
            raise cls(str(error.pop("message", "the launch failed")), **error)
        tail = diagnostics.read_text(errors="replace")[-2000:]
        raise LauncherError(
            f"the supervisor of job {launch.job['uuid']} exited ({proc.returncode}) "
            f"before starting it: {tail.strip() or 'it said nothing'}"
        )
    reaper = threading.Thread(
        target=_reap, args=(launcher, proc), name=f"reap-{proc.pid}", daemon=True
    )
    launcher.watchers.append(reaper)
    reaper.start()
    return dict(answer["started"])


def _reap(launcher: WatchedLauncher, proc: subprocess.Popen[bytes]) -> None:
    """Collect the supervisor's exit (no zombie) while this process lives."""
    try:
        proc.wait()
    finally:
        launcher.watchers[:] = [t for t in launcher.watchers if t is not threading.current_thread()]


# -- the supervisor's side ------------------------------------------------------------------------


def _marker(launch: Launch) -> Path | None:
    if not launch.launch_id:
        return None
    return launch.log_path.with_name(f"{launch.job['uuid']}.{launch.launch_id}.launch")


def _write(marker: Path, record: dict[str, Any]) -> None:
    partial = marker.with_suffix(".partial")
    partial.write_text(json.dumps(record))
    os.replace(partial, marker)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def identity(pid: int) -> str | None:
    """This boot and ``pid``'s start time: names one process across pid reuse and
    reboots (None when there is no such process)."""
    try:
        started = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
    return f"{BOOT_ID}:{started}"


def _claim(marker: Path) -> dict[str, Any] | None:
    """Claim this launch (None), or what an earlier supervisor of it recorded."""
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as out:
            json.dump({"state": "starting", "supervisor": os.getpid(), "host": HOST}, out)
        return None
    deadline = time.monotonic() + STARTING_WAIT
    while True:
        try:
            record = json.loads(marker.read_text())
        except ValueError:  # caught between its create and its first write
            record = {"state": "starting", "supervisor": 0}
        if record.get("state") != "starting":
            return dict(record)
        # The log directory may be shared by several machines: a pid says something
        # only on the host that wrote it; elsewhere, wait for the record to change.
        pid = int(record.get("supervisor") or 0) if record.get("host") == HOST else 0
        if (pid and not _alive(pid)) or time.monotonic() > deadline:
            raise LauncherError(
                "an earlier attempt at this launch stopped while starting the job; it is "
                "not started a second time (launch it again with a new message)"
            )
        time.sleep(0.1)


def run(spec: dict[str, Any], answer: Any) -> int:
    """Start the launch in ``spec``, ``answer`` the launcher, then watch it to its end."""
    from pipelinejobs.adapters.launchers import make_watched

    launch = Launch.from_dict(spec["launch"], report=_no_bus_report)
    launcher = make_watched(spec["launcher"], spec.get("options") or {})
    marker = _marker(launch)
    try:
        earlier = _claim(marker) if marker else None
    except PipelineJobsError as exc:
        answer({"error": exc.to_dict()})
        return 1
    if earlier is not None:
        log.info("launch %s of job %s was started before; answering with it",
                 launch.launch_id, launch.job["uuid"])  # fmt: skip
        answer({"started": {**earlier.get("started", {}), "already_started": True}})
        return 0
    try:
        limit = max_run_time(launch.job_definition)
        handle = launcher.start(launch)
    except Exception as exc:
        if marker:  # nothing runs: a redelivery of this launch may try again
            marker.unlink(missing_ok=True)
        if isinstance(exc, PipelineJobsError):
            answer({"error": exc.to_dict()})
        else:  # the boundary of this process: say what happened, never hang the caller
            log.exception("starting job %s failed", launch.job["uuid"])
            message = f"the {launcher.name} launcher failed starting the job"
            answer({"error": {"error": "LauncherError",
                              "message": f"{message} ({type(exc).__name__}: {exc})"}})  # fmt: skip
        return 1
    started = {**launcher.describe(handle), "supervisor": os.getpid()}
    if marker:
        record = {
            "state": "started",
            "host": HOST,
            "identity": identity(os.getpid()),
            # So a reaper can make this launcher again and clean up after it.
            "launcher": launcher.name,
            "options": launcher.options(),
        }
        if "pid" in started:  # a local compute: so a reaper can tell it from a reused pid
            record["compute_identity"] = identity(int(started["pid"]))
        _write(marker, {**record, "started": started})
    answer({"started": started})
    stop = StopWatch(stop_path(launch), launcher, handle).start()
    try:
        status = launcher.watch(handle, launch, limit, stopped=stop.reason)
    finally:
        stop.close()
    if marker:
        _write(marker, {"state": "ended", "started": started, "reported": status})
    return 0


# -- stopping on request ---------------------------------------------------------------------------


def stop_path(launch: Launch) -> Path:
    """Where a request to stop this launch's compute is left for its supervisor."""
    return launch.log_path.with_name(f"{launch.job['uuid']}.{launch.launch_id or 'launch'}.stop")


def request_stop(log_dir: Path, uuid: str, reason: str) -> list[str]:
    """Ask the supervisors of job ``uuid``'s running launches to stop its compute; the
    ids of the launches asked. The request is a file beside the launch record (the
    log directory is shared by every gateway and worker), seen within a second."""
    asked = []
    for marker in sorted(log_dir.glob(f"{uuid}.*.launch")):
        try:
            record = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue
        if record.get("state") not in ("starting", "started"):
            continue  # ended: nothing left to stop
        launch_id = marker.name[len(uuid) + 1 : -len(".launch")]
        request = marker.with_name(f"{uuid}.{launch_id}.stop")
        request.write_text(json.dumps({"reason": reason, "at": time.time()}))
        asked.append(launch_id)
    return asked


class StopWatch:
    """A thread of the supervisor that kills the compute when a stop is requested."""

    poll = 0.5

    def __init__(self, path: Path, launcher: WatchedLauncher, handle: Any) -> None:
        self.path, self.launcher, self.handle = path, launcher, handle
        self.asked: str | None = None
        self.ended = threading.Event()
        self.thread = threading.Thread(target=self._run, name="stop-watch", daemon=True)

    def start(self) -> StopWatch:
        self.thread.start()
        return self

    def reason(self) -> str | None:
        """Why the compute was stopped; None if it was not."""
        return self.asked

    def _run(self) -> None:
        while not self.ended.wait(self.poll):
            if not self.path.exists():
                continue
            try:
                self.asked = str(json.loads(self.path.read_text()).get("reason") or "no reason")
            except (OSError, ValueError):
                self.asked = "no reason given"
            log.warning("stop requested (%s): killing the compute", self.asked)
            try:
                self.launcher.kill(self.handle)
            except Exception:  # it may have ended by itself meanwhile
                log.exception("could not kill the compute")
            return

    def close(self) -> None:
        self.ended.set()
        self.thread.join(5)


# -- supervisors lost with their machine ---------------------------------------------------------


def lost_launches(log_dir: Path) -> list[tuple[str, Path, dict[str, Any]]]:
    """Launches of this host whose supervisor is gone while its record says it runs:
    (job uuid, record path, record). After a reboot every one of them; otherwise a
    supervisor killed on its own."""
    lost = []
    for marker in sorted(log_dir.glob("*.launch")):
        try:
            record = json.loads(marker.read_text())
        except (OSError, ValueError):
            continue  # gone, or being written (a claim writes it in place)
        try:
            if not isinstance(record, dict) or record.get("state") != "started":
                continue
            if record.get("host") != HOST:
                continue
            started = record.get("started")
            pid = int((started if isinstance(started, dict) else {}).get("supervisor") or 0)
        except (ValueError, TypeError) as exc:
            # One damaged record must not stop a worker starting: it is left as it is.
            log.error("launch record %s is damaged (%s); it is skipped", marker, exc)
            continue
        if pid and identity(pid) != record.get("identity"):
            lost.append((marker.name.split(".", 1)[0], marker, record))
    return lost


def claim_lost(marker: Path, record: dict[str, Any], reason: str) -> bool:
    """Take a lost launch over (one worker of the host wins): kill what is left of its
    compute and mark the record lost. False if another worker took it."""
    try:
        os.close(os.open(marker.with_suffix(".lost"), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    try:
        pid = int((record.get("started") or {}).get("pid") or 0)
    except (TypeError, ValueError):  # a damaged record: no compute of ours to stop
        pid = 0
    if pid and identity(pid) == record.get("compute_identity"):
        try:  # the compute outlived its supervisor: nobody can report its end, so stop it
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    _reap_compute(marker, record)
    _write(marker, {**record, "state": "lost", "reason": reason})
    return True


def _reap_compute(marker: Path, record: dict[str, Any]) -> None:
    """Let the launcher that started a lost launch remove what it left (a docker
    container: its output kept in the job's log, then removed). A failure is logged:
    the job is failed all the same, and the container keeps its job label."""
    from pipelinejobs.adapters.launchers import make_watched

    name, started = record.get("launcher"), record.get("started")
    if not name or name == "local" or not isinstance(started, dict):
        return  # a local compute is killed above; older records name no launcher
    uuid = marker.name.split(".", 1)[0]
    try:
        launcher = make_watched(str(name), record.get("options") or {})
        launcher.reap(started, marker.with_name(f"{uuid}.log"))
    except Exception:  # a damaged record or an engine gone: the others are still reaped
        log.exception("what job %s left running could not be removed", uuid)


def _no_bus_report(status: str, body: Any) -> str:
    raise LauncherError("a supervised launch reports over HTTP, not through the bus")


def main() -> int:
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s supervisor[%(process)d] %(message)s",
        stream=sys.stderr,
    )
    spec = json.loads(sys.stdin.read())
    out = sys.stdout

    def answer(reply: dict[str, Any]) -> None:
        out.write(json.dumps(reply) + "\n")
        out.flush()
        # The launcher stops reading here; nothing else may land on its pipe (and fd 1
        # must stay taken, or the next file opened would get it).
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 1)

    return run(spec, answer)
