"""Agave's job fields as sbatch options (slurm_resources.py), and what is refused."""

from __future__ import annotations

from typing import Any

import pytest

from pipelinejobs.adapters.launchers.slurm import SlurmLauncher
from pipelinejobs.adapters.launchers.slurm_resources import request
from pipelinejobs.config import LauncherSettings
from pipelinejobs.errors import ValidationError
from tests.adapters.launchers.fake_slurm import FakeSlurm

BASE = ["--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=1"]


@pytest.mark.parametrize(("definition", "declared", "options"), [
    ({}, {}, BASE),
    ({"maxRunTime": "00:00:05"}, {}, [*BASE, "--time=1"]),  # Slurm counts whole minutes
    ({"maxRunTime": "01:30:01"}, {}, [*BASE, "--time=91"]),
    ({"maxRunTime": "48:00:00"}, {}, [*BASE, "--time=2880"]),
    ({"batchQueue": "normal"}, {}, [*BASE, "--partition=normal"]),
    ({}, {"partition": "long"}, [*BASE, "--partition=long"]),
    ({"batchQueue": "short"}, {"partition": "long", "partitions": ["short", "long"]},
     [*BASE, "--partition=short"]),
    ({"processorsPerNode": 8}, {}, ["--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=8"]),
    ({"processorsPerNode": 8}, {"parallelism": "PTHREAD"},
     ["--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=8"]),
    ({"nodeCount": 4, "processorsPerNode": 16}, {"parallelism": "PARALLEL"},
     ["--nodes=4", "--ntasks-per-node=16", "--cpus-per-task=1"]),
    ({"nodeCount": 1, "processorsPerNode": 1}, {"parallelism": "SERIAL"}, BASE),
    ({"memoryPerNode": 4}, {}, [*BASE, "--mem=4096M"]),  # Agave's unit: GB
    ({"memoryPerNode": 1.5}, {}, [*BASE, "--mem=1536M"]),
    ({"memoryPerNode": "2GB"}, {}, [*BASE, "--mem=2048M"]),
    ({"memoryPerNode": "512MB"}, {}, [*BASE, "--mem=512M"]),
    ({"memoryPerNode": "0.5"}, {}, [*BASE, "--mem=512M"]),
    ({"memoryPerNode": "100KB"}, {}, [*BASE, "--mem=1M"]),  # rounded up, never 0
    ({"memoryPerNode": "1tb"}, {}, [*BASE, "--mem=1048576M"]),
    ({}, {"account": "lab", "qos": "high"}, [*BASE, "--account=lab", "--qos=high"]),
])  # fmt: skip
def test_agave_fields_map_to_sbatch_options(definition, declared, options):
    assert request(definition, declared, LauncherSettings()).options() == options


def test_the_settings_fill_what_the_launch_and_component_leave_out():
    settings = LauncherSettings(slurm_partition="p0", slurm_account="a0", slurm_qos="q0")
    assert request({}, {}, settings).options() == [
        *BASE, "--partition=p0", "--account=a0", "--qos=q0"
    ]  # fmt: skip
    declared = {"partition": "p1", "account": "a1", "qos": "q1"}
    assert request({"batchQueue": "p2"}, declared, settings).options() == [
        *BASE, "--partition=p2", "--account=a1", "--qos=q1"
    ]  # fmt: skip


@pytest.mark.parametrize(("definition", "declared", "path", "said"), [
    ({"nodeCount": 0}, {}, "nodeCount", "must be a whole number from 1"),
    ({"nodeCount": "2"}, {}, "nodeCount", "must be a whole number from 1"),
    ({"nodeCount": True}, {}, "nodeCount", "must be a whole number from 1"),
    ({"nodeCount": 2.0}, {"parallelism": "PARALLEL"}, "nodeCount", "whole number"),
    ({"nodeCount": 10**9}, {"parallelism": "PARALLEL"}, "nodeCount", "to 1,000,000"),
    ({"nodeCount": 2}, {}, "nodeCount", "runs as one process (parallelism PTHREAD)"),
    ({"nodeCount": 2}, {"parallelism": "SERIAL"}, "nodeCount", "(parallelism SERIAL)"),
    ({"processorsPerNode": -1}, {}, "processorsPerNode", "whole number"),
    ({"processorsPerNode": 4}, {"parallelism": "SERIAL"}, "processorsPerNode", "SERIAL (one CPU)"),
    ({"memoryPerNode": 0}, {}, "memoryPerNode", "must be a positive amount"),
    ({"memoryPerNode": "-1GB"}, {}, "memoryPerNode", "must be a positive amount"),
    ({"memoryPerNode": "lots"}, {}, "memoryPerNode", "must be a positive amount"),
    ({"memoryPerNode": "4 PB"}, {}, "memoryPerNode", "must be a positive amount"),
    ({"memoryPerNode": 1e300}, {}, "memoryPerNode", "more than any node has"),
    ({"memoryPerNode": float("inf")}, {}, "memoryPerNode", "must be a positive amount"),
    ({"memoryPerNode": [4]}, {}, "memoryPerNode", "must be a positive amount"),
    ({"maxRunTime": "5 minutes"}, {}, "maxRunTime", "must be HH:MM:SS"),
    ({"batchQueue": "normal --account=other"}, {}, "batchQueue", "a Slurm partition name"),
    ({"batchQueue": "-p"}, {}, "batchQueue", "a Slurm partition name"),
    ({"batchQueue": 3}, {}, "batchQueue", "a Slurm partition name"),
    ({"batchQueue": "gpu"}, {"partitions": ["cpu", "long"]}, "batchQueue",
     "not a partition this pipeline runs on; it allows: cpu, long"),
    ({"account": "someone-else"}, {}, "account", "charged to its pipeline's account"),
    ({"qos": "urgent"}, {}, "qos", "charged to its pipeline's qos"),
])  # fmt: skip
def test_a_value_slurm_cannot_be_asked_for_is_refused_naming_the_field(
    definition, declared, path, said
):
    with pytest.raises(ValidationError) as info:
        request(definition, declared, LauncherSettings())
    assert info.value.detail["path"] == f"job_definition/{path}"
    assert said in info.value.message


def command(**slurm: Any) -> dict[str, Any]:
    return {"components": [{"id": "a", "command": ["true"], "slurm": slurm}]}


@pytest.mark.parametrize(("definition", "pipeline", "path"), [
    ({"command": ["rm", "-rf", "/"]}, command(), "job_definition/command"),
    ({"environment": {"X": "1"}}, command(), "job_definition/environment"),
    ({}, {"components": [{"id": "a", "command": ["true"]}]}, "job_definition/launcher"),
    ({}, {"components": [{"repo": "example/image:1"}]}, "job_definition/launcher"),
    ({"parameters": {"UNDECLARED": "x"}}, command(), "job_definition/parameters/UNDECLARED"),
])  # fmt: skip
def test_the_launcher_runs_only_a_slurm_command_component(tmp_path, definition, pipeline, path):
    launcher = SlurmLauncher(LauncherSettings(), tmp_path, FakeSlurm())
    with pytest.raises(ValidationError) as info:
        launcher.check(definition, pipeline)
    assert info.value.detail["path"] == path


def test_an_account_refusal_names_where_the_account_comes_from(tmp_path):
    launcher = SlurmLauncher(LauncherSettings(), tmp_path, FakeSlurm())
    pipeline = {"components": [{"id": "x", "inputs": {}}, *command()["components"]]}
    with pytest.raises(ValidationError) as info:
        launcher.check({"appId": "a", "account": "b"}, pipeline)
    assert "(components/1/slurm.account)" in info.value.message
