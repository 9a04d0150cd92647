"""The slurm launcher on each Slurm: the in-memory fake and a real one-node cluster.

Every test here runs twice (``[fake]``, ``[real]``; slurm_launches.py): against the
fake (fake_slurm.py), which runs the real batch script locally, and against a real
slurmctld + slurmd (tests/slurm.py), through sbatch, squeue, scontrol and scancel.
The batch script's status callbacks go to a capture server; its QUEUED report (the
bus) to a list. What only the fake can make Slurm do (TIMEOUT, NODE_FAIL, ...) is in
test_slurm_fake.py.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time

from pipelinejobs.adapters.launchers.slurm import job_name, record_path
from pipelinejobs.domain import validation
from tests.adapters.launchers.slurm_launches import (
    TOKEN,
    Reports,
    launch_of,
    shell,
    wait_for,
)

#: What Slurm (or sh) adds to a batch job's environment, which the launcher does not set
#: (Slurm sets TMPDIR to the node's own when the job has none).
SLURM_ENV = ("SLURM", "ENVIRONMENT", "HOSTNAME", "PWD", "OLDPWD", "SHLVL", "_", "TMPDIR")


def seen_env(path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs if not k.startswith(SLURM_ENV)}


# -- a run -----------------------------------------------------------------------------------


def test_a_batch_job_runs_the_components_argv_with_its_coordinates(
    tmp_path, slurm, capture, monkeypatch
):
    monkeypatch.setenv("WORKER_SECRET", "not for the job")  # the worker's own: not passed on
    probe = (
        'printf "%s\\n" "$@" > args; env > env; pwd > pwd; '
        'echo "hello from slurm"; echo "a warning" >&2'
    )
    pipe = shell(
        probe, "${MODE}", "--literal", environment={"GREETING": "hola"}, variables={"MODE": {}}
    )
    value = "$(touch pwned); echo ${PIPELINEJOBS_JOB_TOKEN} 'q\""
    reports = Reports()
    launch = launch_of(tmp_path, capture, pipe, reports=reports, parameters={"MODE": value})

    started = slurm.launcher(tmp_path).launch(launch)
    ended = slurm.wait_ended(started["slurmJobId"])
    wait_for(lambda: capture.statuses() == ["RUNNING", "FINISHED"], "the script's reports")

    assert ended.state == "COMPLETED"
    work = launch.archive_dir
    assert (work / "args").read_text().splitlines() == [value, "--literal"]  # no shell between
    assert not (work / "pwned").exists()
    assert (work / "pwd").read_text().strip() == str(work)
    name = job_name(launch.job["uuid"], 1)
    body = {
        "appId": "align-0.1",
        "owner": "pipelinejobs",
        "executionSystem": "slurm",
        "archivePath": "/products/job",
        "archiveSystem": "test-system",
        "inputs": {},
        "parameters": {"MODE": value},
        "_links": {},
        "slurmJobName": name,
    }
    inherited = {
        k: os.environ[k] for k in ("PATH", "LANG", "LC_ALL", "TZ", "HOME") if k in os.environ
    }
    env = seen_env(work / "env")
    assert env.pop("PIPELINEJOBS_REPORT_BODY").startswith('{"appId": "align-0.1"')
    assert env == {
        **inherited,
        "GREETING": "hola",
        "MODE": value,
        "PIPELINEJOBS_JOB_UUID": launch.job["uuid"],
        "PIPELINEJOBS_JOB_TOKEN": TOKEN,
        "PIPELINEJOBS_CALLBACK_URL": launch.callback_base,
        "PIPELINEJOBS_ARCHIVE_PATH": "/products/job",
    }
    assert launch.log_path.read_text() == "hello from slurm\na warning\n"
    job_id = started.pop("slurmJobId")
    assert job_id.isdigit()
    assert started == {
        "backend": "slurm",
        "callback": f"{capture.url}/actors/v2/jobs-manager/messages",
        "maxRunTime": None,
        "slurmJobName": name,
        "sbatch": ["--nodes=1", "--ntasks-per-node=1", "--cpus-per-task=1"],
    }
    assert reports.sent == [("QUEUED", {**body, "status": "QUEUED", "slurmJobId": job_id})]
    for query, callback in capture.calls:
        assert query["uuid"] == launch.job["uuid"] and query["token"] == TOKEN
        assert query["x-nonce"] == "PJ_t"
        validation.validate("agave_job_callback", callback)
        assert callback == {
            **body,
            "status": query["status"],
            "slurmJobId": job_id,
            **({"exitCode": 0} if query["status"] == "FINISHED" else {}),
        }
    record = record_path(tmp_path / "logs", launch.job["uuid"], 1)
    assert f'"job_id": "{job_id}"' in record.read_text()  # what the reconciler follows


def test_agave_job_fields_become_sbatch_options(tmp_path, slurm, capture):
    cpus = min(2, os.cpu_count() or 1)
    pipe = shell("true", slurm={"account": "lab", "partitions": ["debug"]})
    launch = launch_of(
        tmp_path,
        capture,
        pipe,
        maxRunTime="00:00:30",
        batchQueue="debug",
        processorsPerNode=cpus,
        memoryPerNode="0.5",
        nodeCount=1,
    )

    started = slurm.launcher(tmp_path).launch(launch)

    assert started["maxRunTime"] == 30.0
    assert started["sbatch"] == [
        "--nodes=1",
        "--ntasks-per-node=1",
        f"--cpus-per-task={cpus}",
        "--mem=512M",
        "--time=1",
        "--partition=debug",
        "--account=lab",
    ]
    slurm.wait_ended(started["slurmJobId"])
    if slurm.name == "real":  # what Slurm itself made of them
        shown = slurm.cluster.show(started["slurmJobId"])
        assert shown["TimeLimit"] == "00:01:00"  # whole minutes: 30 s is 1
        assert shown["Partition"] == "debug" and shown["Account"] == "lab"
        assert shown["NumNodes"] == "1" and shown["CPUs/Task"] == str(cpus)
        assert shown["MinMemoryNode"] == "512M"
        assert shown["JobName"] == job_name(launch.job["uuid"], 1)
        assert shown["Requeue"] == "0"  # a node failure ends the attempt


# -- how it ends -----------------------------------------------------------------------------


def test_an_exit_code_3_fails_the_job_with_it(tmp_path, slurm, capture):
    launch = launch_of(tmp_path, capture, shell("echo boom >&2; exit 3"))
    started = slurm.launcher(tmp_path).launch(launch)
    ended = slurm.wait_ended(started["slurmJobId"])
    wait_for(lambda: capture.statuses() == ["RUNNING", "FAILED"], "the script's reports")

    assert (ended.state, ended.exit_code) == ("FAILED", 3)
    body = capture.calls[-1][1]
    validation.validate("agave_job_callback", body)
    assert body["exitCode"] == 3 and body["error"] == "the job exited with code 3"
    assert launch.log_path.read_text() == "boom\n"


def test_max_run_time_stops_the_command_and_names_timeout(tmp_path, slurm, capture):
    launch = launch_of(tmp_path, capture, shell("echo working; sleep 60"), maxRunTime="00:00:02")
    began = time.monotonic()
    started = slurm.launcher(tmp_path).launch(launch)
    wait_for(lambda: capture.statuses() == ["RUNNING", "FAILED"], "the TIMEOUT report", 20)
    ended = slurm.wait_ended(started["slurmJobId"])
    took = time.monotonic() - began

    print(f"\n[{slurm.name}] maxRunTime 00:00:02 -> FAILED after {took:.1f} s")
    assert took < 10  # not the minute Slurm would have waited, nor the 60 s sleep
    body = capture.calls[-1][1]
    validation.validate("agave_job_callback", body)
    assert body["error"] == (
        "TIMEOUT: maxRunTime 00:00:02 exceeded; the batch script stopped the command "
        "(Slurm's own limit, --time=1, counts whole minutes)"
    )
    assert body["exitCode"] is None
    assert (ended.state, ended.exit_code) == ("FAILED", 124)
    assert launch.log_path.read_text() == "working\n"


# -- once per attempt ------------------------------------------------------------------------


def test_a_launch_delivered_twice_finds_its_batch_job_by_name(tmp_path, slurm, capture):
    launch = launch_of(tmp_path, capture, shell("sleep 1"))
    launcher = slurm.launcher(tmp_path)
    first = launcher.launch(launch)
    again = launcher.launch(launch)  # the launcher-proxy's message, delivered again

    assert again.pop("already_started") is True
    assert again == first
    name = job_name(launch.job["uuid"], 1)
    assert slurm.submissions(name) == 1
    slurm.wait_ended(first["slurmJobId"])
    wait_for(lambda: capture.statuses() == ["RUNNING", "FINISHED"], "one job's reports")


def test_two_deliveries_at_once_submit_one_batch_job(tmp_path, slurm, capture):
    launch = launch_of(tmp_path, capture, shell("true"))
    launcher = slurm.launcher(tmp_path)
    results: list[dict] = []
    threads = [
        threading.Thread(target=lambda: results.append(launcher.launch(launch))) for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len({r["slurmJobId"] for r in results}) == 1
    assert sum(1 for r in results if r.get("already_started")) == 2
    assert slurm.submissions(job_name(launch.job["uuid"], 1)) == 1
    slurm.wait_ended(results[0]["slurmJobId"])


def test_each_attempt_is_a_batch_job_of_its_own(tmp_path, slurm, capture):
    launch = launch_of(tmp_path, capture, shell("true"))
    launcher = slurm.launcher(tmp_path)
    first = launcher.launch(launch)
    slurm.wait_ended(first["slurmJobId"])
    retried = dataclasses.replace(launch, job={**launch.job, "attempt": 2}, launch_id="exec-2")
    second = launcher.launch(retried)

    assert second["slurmJobId"] != first["slurmJobId"] and "already_started" not in second
    assert second["slurmJobName"] == job_name(launch.job["uuid"], 2)
    slurm.wait_ended(second["slurmJobId"])


# -- stopping, and what Slurm says when the script cannot -------------------------------------


def test_cancel_removes_the_batch_job_within_2s(tmp_path, slurm, capture):
    launch = launch_of(tmp_path, capture, shell("echo working; sleep 60"))
    launcher = slurm.launcher(tmp_path)
    started = launcher.launch(launch)
    wait_for(lambda: capture.statuses() == ["RUNNING"], "RUNNING")
    # The log follows the job while it runs (Slurm writes it where /jobs/<uuid>/log reads).
    wait_for(lambda: launch.log_path.read_text() == "working\n", "the log of a running job")
    name = job_name(launch.job["uuid"], 1)
    assert len(slurm.queued(name)) == 1

    asked = time.monotonic()
    assert launcher.stop(launch.job) == [started["slurmJobId"]]
    wait_for(lambda: slurm.queued(name) == [], "the job to leave the queue", 10)
    gone = time.monotonic() - asked
    ended = slurm.wait_ended(started["slurmJobId"])

    print(f"\n[{slurm.name}] scancel -> gone from squeue: {gone:.2f} s")
    assert gone < 2.0
    assert ended.state == "CANCELLED"
    time.sleep(0.3)
    assert capture.statuses() == ["RUNNING"]  # Slurm ended it: the script says nothing
    assert launcher.stop(launch.job) == []  # nothing left to cancel


def test_a_killed_batch_script_is_failed_from_slurms_state(tmp_path, slurm, capture):
    launch = launch_of(tmp_path, capture, shell("sleep 60"))
    launcher = slurm.launcher(tmp_path)
    started = launcher.launch(launch)
    wait_for(lambda: capture.statuses() == ["RUNNING"], "RUNNING")

    slurm.kill_script(started["slurmJobId"])
    ended = slurm.wait_ended(started["slurmJobId"])
    (path, verdict), *others = launcher.verdicts(time.time())

    assert others == []
    assert (ended.state, ended.signal) == ("FAILED", 9)
    assert path == record_path(tmp_path / "logs", launch.job["uuid"], 1)
    assert verdict is not None and verdict.status == "FAILED"
    validation.validate("agave_job_callback", verdict.body)
    assert verdict.body["error"] == (
        f"Slurm batch job {started['slurmJobId']} ended FAILED: its batch script was killed "
        f"by signal 9 before it could report (reason {ended.reason})"
    )
    assert verdict.body["slurmState"] == "FAILED"
    assert capture.statuses() == ["RUNNING"]
