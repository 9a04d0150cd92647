"""A real Slurm for the tests: a one-node cluster of Debian's slurm-wlm, for the session.

When ``slurmctld``, ``slurmd`` and ``munged`` are installed (``.ci/run`` installs
``slurm-wlm`` and ``munge``), a session fixture (tests/conftest.py) starts
:class:`SlurmCluster`: everything it needs lives in a temporary directory of its
own — a munge key, a ``munged`` on a private socket (run as the munge user), a
``slurm.conf`` on free ports (``SlurmctldHost`` the short hostname, ``SlurmUser=root``,
``auth/munge``, ``proctrack/linuxproc``, ``task/none``, ``select/cons_tres`` with
``CR_Core``, one node with this machine's CPUs and 80% of its memory in one default
partition, ``ReturnToService=2``, ``MinJobAge=300``), the controller's state and the
node's spool — so nothing in ``/etc`` matters, and Slurm's commands find it through
``SLURM_CONF``. Every daemon runs in the foreground as a child of the test process,
and :meth:`SlurmCluster.close` cancels every job, stops the daemons and removes the
directory: nothing is left running.

Under ``CI=true`` a missing or broken cluster fails the run instead of skipping
(tests/containers.py's rule for podman).

A few settings keep the tests short: ``KillWait=2`` (a cancelled job's processes get
SIGKILL 2 s after SIGTERM, instead of 30), ``sched/builtin`` with
``batch_sched_delay=0`` and ``sched_min_interval=100000`` (a job starts within about
a second of its submission or of a CPU coming free, instead of up to 3 s later).
Slurm's time limits stay what they are everywhere: whole minutes, checked every 30 s.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

SBIN = ("/usr/sbin", "/usr/bin", "/usr/local/sbin")
#: The partition every job runs in.
PARTITION = "debug"


def which(name: str) -> str | None:
    """A daemon or command, on the PATH or in the sbin directories (root's PATH may lack them)."""
    found = shutil.which(name)
    if found:
        return found
    for directory in SBIN:
        if os.access(f"{directory}/{name}", os.X_OK):
            return f"{directory}/{name}"
    return None


def missing() -> str | None:
    """Why no real cluster can run here (None: it can)."""
    absent = [n for n in ("slurmctld", "slurmd", "sbatch", "munged") if which(n) is None]
    if absent:
        return f"Slurm is not installed ({', '.join(absent)} missing; .ci/run installs slurm-wlm)"
    if os.geteuid() != 0:
        return "a Slurm test cluster is started as root (SlurmUser=root; munged as munge)"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "no munge user (Debian's munge package makes it)"
    return None


def unavailable(what: str) -> None:
    """Skip, except under ``CI=true``, where a missing cluster fails the run (a green CI
    must not hide it; as tests/containers.py does for podman)."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} (CI=true: a missing Slurm cluster fails the run)")
    pytest.skip(what)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _memory_mb() -> int:
    pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    return int(pages * size / (1024 * 1024) * 0.8)


class SlurmCluster:
    """A one-node Slurm in a temporary directory, until :meth:`close`."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pipelinejobs-slurm-"))
        self.dir.chmod(0o755)  # munged (the munge user) must reach its socket
        self.host = socket.gethostname().split(".")[0]
        self.conf = self.dir / "slurm.conf"
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            self._munge()
            self._configure()
            self._start(
                "slurmctld", [which("slurmctld") or "slurmctld", "-D", "-f", str(self.conf)]
            )
            self._start("slurmd", [which("slurmd") or "slurmd", "-D", "-f", str(self.conf)])
            self._wait_idle()
        except BaseException:
            self.close()
            raise

    # -- setting up -------------------------------------------------------------------------

    def _munge(self) -> None:
        munge = pwd.getpwnam("munge")
        home = self.dir / "munge"
        home.mkdir(mode=0o711)
        key = home / "munge.key"
        maker = which("mungekey")
        if maker:
            subprocess.run(
                [maker, "--create", "--keyfile", str(key)],
                check=True,
                capture_output=True,
                timeout=30,
            )
        else:  # older munge: the key is random bytes
            key.write_bytes(os.urandom(1024))
        for path in (home, key):
            os.chown(path, munge.pw_uid, munge.pw_gid)
        key.chmod(0o400)
        self.munge_socket = home / "munge.socket"
        self._start(
            "munged",
            [
                which("munged") or "munged",
                "--foreground",
                f"--socket={self.munge_socket}",
                f"--key-file={key}",
                f"--log-file={home / 'munged.log'}",
                f"--pid-file={home / 'munged.pid'}",
                f"--seed-file={home / 'munged.seed'}",
            ],
            user=munge.pw_uid,
            group=munge.pw_gid,
        )
        deadline = time.monotonic() + 20
        while not self.munge_socket.exists():
            self._check_alive("munged")
            if time.monotonic() > deadline:
                raise RuntimeError("munged did not make its socket")
            time.sleep(0.05)

    def _configure(self) -> None:
        for name in ("state", "spool", "log"):
            (self.dir / name).mkdir()
        d = self.dir
        self.conf.write_text(
            "\n".join(
                [
                    "ClusterName=pipelinejobs-test",
                    f"SlurmctldHost={self.host}(127.0.0.1)",
                    f"SlurmctldPort={_free_port()}",
                    f"SlurmdPort={_free_port()}",
                    "SlurmUser=root",
                    "SlurmdUser=root",
                    "AuthType=auth/munge",
                    f"AuthInfo=socket={self.munge_socket}",
                    "CredType=cred/munge",
                    "ProctrackType=proctrack/linuxproc",
                    "TaskPlugin=task/none",
                    "SelectType=select/cons_tres",
                    "SelectTypeParameters=CR_Core",
                    "SchedulerType=sched/builtin",
                    "SchedulerParameters=batch_sched_delay=0,sched_min_interval=100000",
                    "MpiDefault=none",
                    "JobAcctGatherType=jobacct_gather/none",
                    "AccountingStorageType=accounting_storage/none",
                    "ReturnToService=2",
                    "MinJobAge=300",
                    "KillWait=2",
                    f"StateSaveLocation={d / 'state'}",
                    f"SlurmdSpoolDir={d / 'spool'}",
                    f"SlurmctldPidFile={d / 'slurmctld.pid'}",
                    f"SlurmdPidFile={d / 'slurmd.pid'}",
                    f"SlurmctldLogFile={d / 'log' / 'slurmctld.log'}",
                    f"SlurmdLogFile={d / 'log' / 'slurmd.log'}",
                    f"NodeName={self.host} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} "
                    f"RealMemory={_memory_mb()} State=UNKNOWN",
                    f"PartitionName={PARTITION} Nodes={self.host} Default=YES MaxTime=INFINITE "
                    f"State=UP",
                    "",
                ]
            )
        )

    def _start(self, name: str, argv: list[str], **switch: int) -> None:
        with open(self.dir / f"{name}.out", "wb") as out:
            self.procs[name] = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env(),
                start_new_session=True,
                **switch,  # type: ignore[arg-type]
            )

    def _check_alive(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited ({proc.returncode}): {self.log(name)}")

    def _wait_idle(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            for name in self.procs:
                self._check_alive(name)
            state = self.run("sinfo", "--noheader", "--format=%t", check=False).stdout.strip()
            if state == "idle":
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Slurm node is not idle ({state!r}): {self.log('slurmd')}")
            time.sleep(0.1)

    # -- using it ---------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "SLURM_CONF": str(self.conf)}

    def run(
        self, *argv: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess:
        """A Slurm command on this cluster."""
        return subprocess.run(
            [which(argv[0]) or argv[0], *argv[1:]],
            capture_output=True,
            text=True,
            env=self.env(),
            check=check,
            timeout=timeout,
        )

    def log(self, name: str) -> str:
        for path in (self.dir / "log" / f"{name}.log", self.dir / f"{name}.out"):
            if path.exists():
                return path.read_text(errors="replace")[-2000:]
        return ""

    def queued(self, name: str) -> list[str]:
        """What squeue shows of jobs named ``name`` by default (pending, running,
        completing): ``id state`` each."""
        out = self.run("squeue", "--noheader", f"--name={name}", "--format=%i %T").stdout
        return out.split("\n")[:-1]

    def jobs(self, prefix: str = "pipelinejobs-") -> dict[str, list[str]]:
        """Every job Slurm holds (any state) whose name starts with ``prefix``: name ->
        ids (one batch job per name, unless something was submitted twice)."""
        out = self.run("squeue", "--noheader", "--states=all", "--format=%j|%i").stdout
        found: dict[str, list[str]] = {}
        for line in out.splitlines():
            name, _, job_id = line.strip().partition("|")
            if name.startswith(prefix):
                found.setdefault(name, []).append(job_id)
        return found

    def show(self, job_id: str) -> dict[str, str]:
        """``scontrol show job``'s fields (the first of each key)."""
        out = self.run("scontrol", "show", "job", "--oneliner", job_id).stdout
        fields: dict[str, str] = {}
        for item in out.split():
            key, sep, value = item.partition("=")
            if sep:
                fields.setdefault(key, value)
        return fields

    def pids(self, job_id: str) -> tuple[int, list[int]]:
        """(the batch script's pid, every other process of the job)."""
        out = self.run("scontrol", "listpids", job_id).stdout
        script, others = 0, []
        for line in out.splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 4 and cols[0].isdigit():
                if cols[3] == "0":
                    script = int(cols[0])
                else:
                    others.append(int(cols[0]))
        return script, others

    # -- taking it down ---------------------------------------------------------------------

    def close(self) -> None:
        """Cancel every job, stop every daemon (munged last), remove the directory."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            self.run("scancel", "--user=root", check=False)
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                busy = self.run("squeue", "--noheader", check=False)
                if busy.returncode != 0 or not busy.stdout.strip():
                    break
                time.sleep(0.1)
        for name in ("slurmd", "slurmctld", "munged"):
            proc = self.procs.get(name)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)
