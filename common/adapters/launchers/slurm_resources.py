"""Agave's job fields as sbatch options: what one Slurm batch job asks the cluster for.

The seed's jobs ran on HPC systems through Agave, whose job definitions say what a
job needs in Agave's words; the slurm launcher turns them into Slurm's:

============================ ==========================================================
job_definition field         sbatch option
============================ ==========================================================
``maxRunTime`` ``HH:MM:SS``  ``--time`` in whole minutes, rounded up (Slurm counts
                             minutes); the batch script holds the job to the exact
                             seconds (see slurm_batch.sh)
``batchQueue``               ``--partition`` (else the component's ``partition``,
                             else ``launcher.slurm_partition``, else the cluster's
                             default partition)
``nodeCount``                ``--nodes``
``processorsPerNode``        ``--ntasks-per-node`` / ``--cpus-per-task``, by the
                             component's ``parallelism`` (below)
``memoryPerNode``            ``--mem`` in MB (Agave's unit is GB: ``4``, ``1.5GB``,
                             ``512MB``)
============================ ==========================================================

``--account`` and ``--qos`` are the pipeline's (its component's ``slurm.account`` and
``slurm.qos``) or the deployment's (``launcher.slurm_account``, ``slurm_qos``), never
a launch's: who pays for a job is not for whoever launches it to choose, so a
``job_definition`` naming ``account`` or ``qos`` is refused rather than ignored.

``parallelism`` is Agave's app setting, declared by the component (an admin's), not
the launch: ``PTHREAD`` (the default: the command is one process, given
``processorsPerNode`` CPUs on one node: ``--ntasks-per-node=1
--cpus-per-task=<processorsPerNode>``), ``SERIAL`` (one CPU on one node) or
``PARALLEL`` (the command starts its own tasks, with ``srun`` or ``mpirun``: ``--nodes
<nodeCount> --ntasks-per-node=<processorsPerNode>``). A value the component's
parallelism cannot use — ``nodeCount: 4`` for a one-process command — is refused, as
is any malformed value, each naming the field (``job_definition/nodeCount``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipelinejobs.adapters.launchers.base import max_run_time
from pipelinejobs.config import LauncherSettings
from pipelinejobs.errors import ValidationError

PARALLELISMS = ("SERIAL", "PTHREAD", "PARALLEL")
DEFAULT_PARALLELISM = "PTHREAD"
#: A partition, account or QOS name as Slurm writes them (and nothing an sbatch
#: option could read as more than one value).
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]{0,63}", re.ASCII)
#: Agave's memoryPerNode: a number of GB, or a number with a unit.
_MEMORY = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]B)?", re.ASCII | re.IGNORECASE)
_MB_PER = {"KB": 1 / 1024, "MB": 1.0, "GB": 1024.0, "TB": 1024.0 * 1024}
#: The launch fields that would charge a job to someone: the pipeline's or config's.
CHARGED_FIELDS = ("account", "qos")
#: Largest count accepted for nodeCount / processorsPerNode (Slurm refuses what its
#: cluster cannot give; this only keeps absurd numbers out of an sbatch argv).
MAX_COUNT = 1_000_000


@dataclass(frozen=True)
class Request:
    """What one batch job asks for, as sbatch options (:meth:`options`)."""

    nodes: int = 1
    tasks_per_node: int = 1
    cpus_per_task: int = 1
    memory_mb: int | None = None
    #: maxRunTime in seconds (None: no limit of the job's own; the partition's applies).
    seconds: float | None = None
    partition: str = ""
    account: str = ""
    qos: str = ""

    @property
    def minutes(self) -> int | None:
        """Slurm's ``--time``: whole minutes, rounded up (a 5 s limit is 1 minute)."""
        return None if self.seconds is None else max(1, math.ceil(self.seconds / 60))

    def options(self) -> list[str]:
        out = [
            f"--nodes={self.nodes}",
            f"--ntasks-per-node={self.tasks_per_node}",
            f"--cpus-per-task={self.cpus_per_task}",
        ]
        if self.memory_mb is not None:
            out.append(f"--mem={self.memory_mb}M")
        if self.minutes is not None:
            out.append(f"--time={self.minutes}")
        for option, value in (
            ("partition", self.partition),
            ("account", self.account),
            ("qos", self.qos),
        ):
            if value:
                out.append(f"--{option}={value}")
        return out


def request(
    definition: Mapping[str, Any],
    declared: Mapping[str, Any],
    settings: LauncherSettings,
    where: str = "the component's slurm",
) -> Request:
    """The request of a job with ``definition``, of a component declaring ``declared``
    (its ``slurm`` object), under ``settings``; ValidationError naming the field."""
    for name in CHARGED_FIELDS:
        if name in definition:
            raise ValidationError(
                f"job_definition.{name} is not accepted: a Slurm job is charged to its "
                f"pipeline's {name} ({where}.{name}) or to launcher.slurm_{name}, not to "
                f"one its launch names",
                path=f"job_definition/{name}",
            )
    parallelism = str(declared.get("parallelism") or DEFAULT_PARALLELISM)
    nodes = _count(definition, "nodeCount")
    per_node = _count(definition, "processorsPerNode")
    if parallelism != "PARALLEL" and nodes not in (None, 1):
        raise ValidationError(
            f"nodeCount {nodes}: this pipeline's command runs as one process "
            f"(parallelism {parallelism}), on one node; only a PARALLEL component starts "
            f"tasks across nodes",
            path="job_definition/nodeCount",
        )
    if parallelism == "SERIAL" and per_node not in (None, 1):
        raise ValidationError(
            f"processorsPerNode {per_node}: this pipeline's command is SERIAL (one CPU)",
            path="job_definition/processorsPerNode",
        )
    if parallelism == "PARALLEL":
        shape = {"nodes": nodes or 1, "tasks_per_node": per_node or 1, "cpus_per_task": 1}
    else:
        shape = {"nodes": 1, "tasks_per_node": 1, "cpus_per_task": per_node or 1}
    partition = _name(definition, "batchQueue") or str(declared.get("partition") or "")
    allowed = [str(p) for p in declared.get("partitions") or ()]
    if partition and allowed and partition not in allowed:
        raise ValidationError(
            f"batchQueue {partition!r} is not a partition this pipeline runs on; it allows: "
            f"{', '.join(allowed)}",
            path="job_definition/batchQueue",
            allowed=allowed,
        )
    return Request(
        **shape,
        memory_mb=_memory(definition.get("memoryPerNode")),
        seconds=max_run_time(definition),
        partition=partition or settings.slurm_partition,
        account=str(declared.get("account") or settings.slurm_account),
        qos=str(declared.get("qos") or settings.slurm_qos),
    )


def _count(definition: Mapping[str, Any], field: str) -> int | None:
    value = definition.get(field)
    if value is None:
        return None
    # bool is an int in Python; JSON's true is not a count.
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
        raise ValidationError(
            f"{field} must be a whole number from 1 to {MAX_COUNT:,}, not {value!r}",
            path=f"job_definition/{field}",
        )
    return value


def _name(definition: Mapping[str, Any], field: str) -> str:
    value = definition.get(field)
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise ValidationError(
            f"{field} must be a Slurm partition name (letters, digits, _ . + -), not {value!r}",
            path=f"job_definition/{field}",
        )
    return value


def _memory(value: Any) -> int | None:
    """MB of Agave's memoryPerNode (GB unless it says otherwise), rounded up."""
    if value is None or value == "":
        return None
    amount: float | None = None
    unit = "GB"
    if isinstance(value, int | float) and not isinstance(value, bool):
        amount = float(value)
    elif isinstance(value, str):
        match = _MEMORY.fullmatch(value.strip())
        if match:
            amount, unit = float(match.group(1)), (match.group(2) or "GB").upper()
    if amount is None or not math.isfinite(amount) or amount <= 0:
        raise ValidationError(
            f"memoryPerNode must be a positive amount, in GB (4, 1.5) or with a unit "
            f"(512MB, 2GB), not {value!r}",
            path="job_definition/memoryPerNode",
        )
    megabytes = amount * _MB_PER[unit]
    if megabytes > 1024**3:  # a petabyte per node is no request
        raise ValidationError(
            f"memoryPerNode {value!r} is more than any node has",
            path="job_definition/memoryPerNode",
        )
    return max(1, math.ceil(megabytes))
