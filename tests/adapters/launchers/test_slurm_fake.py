"""What only the in-memory Slurm can show: Slurm ending jobs its way, forgetting them,
and not answering. Each Slurm verdict is read as the reconciler reads it
(:meth:`SlurmLauncher.verdicts`); the real cluster's cases are in test_slurm.py."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from pipelinejobs.adapters.launchers.slurm import job_name, record_path
from pipelinejobs.domain import validation
from pipelinejobs.errors import LauncherUnavailable
from tests.adapters.launchers.slurm_launches import (
    FakeUnderTest,
    launch_of,
    shell,
    wait_for,
)


@pytest.fixture
def slurm() -> Iterator[FakeUnderTest]:
    under_test = FakeUnderTest()
    yield under_test
    under_test.close()


@pytest.mark.parametrize(
    ("state", "reason", "said"),
    [
        ("TIMEOUT", "TimeLimit", "Slurm ended it at its time limit"),
        ("NODE_FAIL", "NodeDown", "its node failed"),
        ("PREEMPTED", "None", "it was preempted"),
        ("OUT_OF_MEMORY", "OutOfMemory", "it ran out of memory"),
        ("CANCELLED", "None", "it was cancelled in Slurm (scancel), not through PipelineJobs"),
    ],
)
def test_a_job_slurm_ended_is_failed_at_once_naming_slurms_state(
    tmp_path, slurm, capture, state, reason, said
):
    launch = launch_of(tmp_path, capture, shell("sleep 60"))
    launcher = slurm.launcher(tmp_path)
    job_id = launcher.launch(launch)["slurmJobId"]
    wait_for(lambda: capture.statuses() == ["RUNNING"], "RUNNING")

    slurm.fake.end(job_id, state, reason)
    slurm.wait_ended(job_id)
    [(path, verdict)] = launcher.verdicts(time.time())  # no grace: the script cannot report

    assert verdict is not None and verdict.status == "FAILED"
    assert (
        verdict.body["error"] == f"Slurm batch job {job_id} ended {state}: {said} (reason {reason})"
    )
    assert (verdict.body["slurmState"], verdict.body["slurmReason"]) == (state, reason)
    validation.validate("agave_job_callback", verdict.body)
    assert verdict.key == f"{job_id}:{state}"  # one outcome whoever records it
    assert (verdict.uuid, verdict.attempt) == (launch.job["uuid"], 1)
    # The script has exited (wait_ended): it said nothing of an end Slurm made.
    assert capture.statuses() == ["RUNNING"]


@pytest.mark.parametrize(
    ("script", "status", "extra"),
    [
        ("true", "FINISHED", {"exitCode": 0}),
        ("exit 3", "FAILED", {"exitCode": 3, "error": "the job exited with code 3"}),
    ],
)
def test_a_job_that_ended_by_itself_is_left_to_its_report_for_the_grace(
    tmp_path, slurm, capture, script, status, extra
):
    launch = launch_of(tmp_path, capture, shell(script))
    launcher = slurm.launcher(tmp_path, slurm_report_grace=60.0)
    job_id = launcher.launch(launch)["slurmJobId"]
    ended = slurm.wait_ended(job_id)

    [(_, waiting)] = launcher.verdicts(time.time())
    assert waiting is None  # its script reports (or reported) it

    # Had that report been lost, the end is recorded from Slurm's state after the grace.
    [(_, late)] = launcher.verdicts((ended.end_time or 0) + 61)
    assert late is not None and late.status == status
    assert {k: late.body[k] for k in extra} == {
        k: (f"Slurm batch job {job_id} ended FAILED with exit code 3" if k == "error" else v)
        for k, v in extra.items()
    }
    validation.validate("agave_job_callback", late.body)


def test_a_job_slurm_forgot_is_failed_saying_so(tmp_path, slurm, capture):
    launch = launch_of(tmp_path, capture, shell("true"))
    launcher = slurm.launcher(tmp_path)
    job_id = launcher.launch(launch)["slurmJobId"]
    slurm.wait_ended(job_id)
    slurm.fake.forget(job_id)  # MinJobAge passed with no report and no pass in between

    [(_, verdict)] = launcher.verdicts(time.time())
    assert verdict is not None and verdict.status == "FAILED"
    assert verdict.body["slurmState"] == "UNKNOWN"
    assert f"Slurm no longer knows batch job {job_id}" in verdict.body["error"]


def test_a_running_job_has_no_verdict_and_a_forgotten_record_none(tmp_path, slurm, capture):
    launch = launch_of(tmp_path, capture, shell("sleep 60"))
    launcher = slurm.launcher(tmp_path)
    launcher.launch(launch)
    wait_for(lambda: capture.statuses() == ["RUNNING"], "RUNNING")
    assert launcher.verdicts(time.time()) == []

    launcher.forget(record_path(tmp_path / "logs", launch.job["uuid"], 1))
    calls = len(slurm.fake.calls)
    assert launcher.verdicts(time.time()) == []
    assert slurm.fake.calls[calls:] == []  # nothing outstanding: Slurm is not asked


def test_a_launch_slurm_forgot_is_not_submitted_again(tmp_path, slurm, capture):
    # Redelivered after MinJobAge: Slurm no longer lists the name, but the record
    # remembers the job it was: the attempt is not run a second time.
    launch = launch_of(tmp_path, capture, shell("true"))
    launcher = slurm.launcher(tmp_path)
    first = launcher.launch(launch)
    slurm.wait_ended(first["slurmJobId"])
    slurm.fake.forget(first["slurmJobId"])

    again = launcher.launch(launch)
    assert again["slurmJobId"] == first["slurmJobId"] and again["already_started"] is True
    assert len(slurm.fake.submitted) == 1


def test_an_unreachable_slurm_refuses_the_launch_and_the_pass(tmp_path, slurm, capture):
    launch = launch_of(tmp_path, capture, shell("true"))
    launcher = slurm.launcher(tmp_path)
    slurm.fake.down = True
    with pytest.raises(LauncherUnavailable) as info:
        launcher.launch(launch)
    assert "Unable to contact slurm controller" in info.value.message
    assert slurm.fake.submitted == []
    # A record written before Slurm went away is asked about, and the pass says so.
    slurm.fake.down = False
    launcher.launch(launch_of(tmp_path, capture, shell("sleep 5")))
    slurm.fake.down = True
    with pytest.raises(LauncherUnavailable):
        launcher.verdicts(time.time())


def test_cancel_cancels_only_this_attempts_pending_or_running_job(tmp_path, slurm, capture):
    launch = launch_of(tmp_path, capture, shell("sleep 60"))
    launcher = slurm.launcher(tmp_path)
    job_id = launcher.launch(launch)["slurmJobId"]
    assert launcher.stop({**launch.job, "attempt": 2}) == []  # another attempt: not this one
    assert launcher.stop(launch.job) == [job_id]
    assert slurm.wait_ended(job_id).state == "CANCELLED"
    assert slurm.fake.find([job_name(launch.job["uuid"], 1)])[0].state == "CANCELLED"
