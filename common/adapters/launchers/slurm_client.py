"""Talking to Slurm: the four things the slurm launcher asks of it, behind one interface.

:class:`Slurm` is what the launcher and the reconciler use — submit a batch job,
find jobs by name, show one job, cancel one — and :class:`SlurmCLI` does it with
Slurm's own commands (``sbatch --parsable``, ``squeue``, ``scontrol show job``,
``scancel``). Tests use an in-memory Slurm behind the same interface
(tests/adapters/launchers/fake_slurm.py) beside a real one-node cluster.

**Why the CLI, not slurmrestd.** Every Slurm site has the commands, configured by
the site for its own cluster (``slurm.conf``, munge); slurmrestd is an optional
daemon many sites do not run, with its own authentication (JWT or a local socket),
and its API changes with each release (``v0.0.38`` in 22.05, gone two releases
later), where the commands' options used here have been stable for a decade. A
worker needs only what a user on a login node has. The commands cost a process
each, which is why the reconciler asks once per pass for all of its jobs
(:meth:`Slurm.find` takes every name at once) and shows only those that ended.

Nothing here goes through a shell: every command is an argv. The batch job's
environment is handed to ``sbatch --export-file`` as NUL-separated ``NAME=value``
pairs on an unlinked temporary file's descriptor, so no value is ever read by a
shell nor appears on a command line (the job's update token and callback nonce are
in it), and sbatch's own environment (which it would read ``SBATCH_*`` options from)
is only ``PATH`` and ``SLURM_CONF``.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from pipelinejobs.errors import LauncherError, LauncherUnavailable

#: Slurm job states after which nothing more happens to a job (squeue's long names).
ENDED = frozenset({
    "COMPLETED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY",
    "CANCELLED", "BOOT_FAIL", "DEADLINE",
})  # fmt: skip
#: What Slurm's commands say when they cannot reach slurmctld at all.
_UNREACHABLE = (
    "Unable to contact slurm controller",
    "Socket timed out",
    "Connection refused",
    "Zero Bytes were transmitted or received",
    "Communication connection failure",
)
#: Names per squeue call (the names are ~50 characters: well inside ARG_MAX).
NAMES_PER_CALL = 200


@dataclass(frozen=True)
class Submission:
    """One batch job to submit: ``script`` run with ``args`` in ``workdir``, with
    exactly ``environment`` (plus Slurm's own ``SLURM_*``), its stdout and stderr
    appended to ``output``."""

    name: str
    script: Path
    args: list[str]
    environment: dict[str, str]
    workdir: Path
    output: Path
    options: list[str] = field(default_factory=list)
    comment: str = ""


@dataclass(frozen=True)
class SlurmJob:
    """What Slurm says of one job. ``exit_code``/``signal`` and the times are known
    only from :meth:`Slurm.show` (squeue's listing leaves them None)."""

    id: str
    name: str
    state: str
    reason: str = ""
    exit_code: int | None = None
    signal: int | None = None
    #: When it ended (seconds since the epoch), once it has.
    end_time: float | None = None

    @property
    def ended(self) -> bool:
        return self.state in ENDED


class Slurm(ABC):
    """The Slurm operations PipelineJobs uses. Each raises LauncherUnavailable when
    Slurm cannot be reached and LauncherError when it refuses."""

    @abstractmethod
    def submit(self, submission: Submission) -> str:
        """Submit a batch job; its id."""

    @abstractmethod
    def find(self, names: Sequence[str]) -> list[SlurmJob]:
        """Every job Slurm still holds (pending, running, or ended within its
        ``MinJobAge``) named one of ``names``."""

    @abstractmethod
    def show(self, job_id: str) -> SlurmJob | None:
        """One job in detail (exit code, signal, end time); None if Slurm no longer
        knows it."""

    @abstractmethod
    def cancel(self, job_id: str) -> None:
        """Cancel a job (Slurm signals its processes, then kills them)."""


class SlurmCLI(Slurm):
    """Slurm through its commands, found in ``bin_dir`` (else on the PATH) and
    reading ``conf`` (``SLURM_CONF``; else Slurm's default)."""

    def __init__(self, bin_dir: str = "", conf: str = "", timeout: float = 30.0) -> None:
        self.bin_dir, self.conf, self.timeout = bin_dir, conf, timeout

    def command(self, name: str) -> str:
        return str(Path(self.bin_dir) / name) if self.bin_dir else name

    def environment(self) -> dict[str, str]:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        conf = self.conf or os.environ.get("SLURM_CONF", "")
        if conf:
            env["SLURM_CONF"] = conf
        return env

    def run(self, argv: list[str], pass_fds: Iterable[int] = ()) -> str:
        """Run one Slurm command; its stdout. Its failure, translated."""
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                env=self.environment(),
                timeout=self.timeout,
                pass_fds=tuple(pass_fds),
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError as exc:
            raise LauncherUnavailable(
                f"{argv[0]} is not installed here (set launcher.slurm_bin to the directory "
                f"holding Slurm's commands)",
                command=argv[0],
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise LauncherUnavailable(
                f"Slurm did not answer {Path(argv[0]).name} within {self.timeout:g}s "
                f"(launcher.slurm_timeout)",
                command=Path(argv[0]).name,
            ) from exc
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip()[-1000:] or f"exit code {done.returncode}"
            cls = LauncherUnavailable if any(u in said for u in _UNREACHABLE) else LauncherError
            raise cls(f"Slurm's {Path(argv[0]).name} failed: {said}", command=Path(argv[0]).name)
        return done.stdout

    def submit(self, submission: Submission) -> str:
        with tempfile.TemporaryFile() as env_file:  # unlinked: no name on disk
            env_file.write(
                b"".join(
                    f"{k}={v}".encode() + b"\0" for k, v in sorted(submission.environment.items())
                )
            )
            env_file.flush()
            env_file.seek(0)
            fd = env_file.fileno()
            argv = [
                self.command("sbatch"),
                "--parsable",
                f"--job-name={submission.name}",
                f"--chdir={submission.workdir}",
                f"--output={submission.output}",
                "--open-mode=append",
                # The environment is the file's, exactly: nothing of the worker's leaks in.
                "--export=ALL",
                f"--export-file={fd}",
                # A node failure or preemption ends the attempt (PipelineJobs' retry
                # policy makes a new one, in a fresh archive directory): Slurm does not
                # run the same attempt again behind its back.
                "--no-requeue",
                *([f"--comment={submission.comment}"] if submission.comment else []),
                *submission.options,
                str(submission.script),
                *submission.args,
            ]
            out = self.run(argv, pass_fds=(fd,))
        job_id = out.strip().split(";", 1)[0]
        if not job_id.isdigit():
            raise LauncherError(f"sbatch answered {out.strip()[:200]!r}, not a job id")
        return job_id

    def find(self, names: Sequence[str]) -> list[SlurmJob]:
        found: list[SlurmJob] = []
        unique = list(dict.fromkeys(names))
        for start in range(0, len(unique), NAMES_PER_CALL):
            chunk = unique[start : start + NAMES_PER_CALL]
            out = self.run([
                self.command("squeue"), "--noheader", "--states=all",
                f"--name={','.join(chunk)}", "--format=%i|%j|%T|%r",
            ])  # fmt: skip
            for line in out.splitlines():
                parts = line.strip().split("|", 3)
                if len(parts) == 4 and parts[1] in chunk:
                    found.append(SlurmJob(parts[0], parts[1], parts[2], parts[3]))
        return found

    def show(self, job_id: str) -> SlurmJob | None:
        try:
            out = self.run([self.command("scontrol"), "show", "job", "--oneliner", job_id])
        except LauncherError as exc:
            if "Invalid job id" in exc.message and not isinstance(exc, LauncherUnavailable):
                return None
            raise
        return parse_show(out)

    def cancel(self, job_id: str) -> None:
        self.run([self.command("scancel"), job_id])


def parse_show(text: str) -> SlurmJob | None:
    """The fields of ``scontrol show job --oneliner`` the launcher reads."""
    fields = _fields(text)
    if "JobId" not in fields:
        return None
    code, _, signal = fields.get("ExitCode", "").partition(":")
    return SlurmJob(
        id=fields["JobId"],
        name=fields.get("JobName", ""),
        state=fields.get("JobState", ""),
        reason=fields.get("Reason", ""),
        exit_code=int(code) if code.isdigit() else None,
        signal=int(signal) if signal.isdigit() else None,
        end_time=_epoch(fields.get("EndTime", "")),
    )


_FIELD = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z/:]*)=(\S*)")


def _fields(text: str) -> Mapping[str, str]:
    """``Key=value`` pairs of one job's line: the first of each key (the values read
    here hold no spaces)."""
    out: dict[str, str] = {}
    for key, value in _FIELD.findall(text.strip().splitlines()[0] if text.strip() else ""):
        out.setdefault(key, value)
    return out


def _epoch(value: str) -> float | None:
    """Seconds since the epoch of Slurm's local ``2026-11-30T16:51:48`` (None for
    ``Unknown``, ``None`` or a time not yet come)."""
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None
