"""Retry policies and attempts (common/domain/retry.py)."""

from __future__ import annotations

from pipelinejobs.domain import retry

PATH = "/products/v2/p/l/d/tomato-boar-20261130T081930Z"
JOB = {
    "uuid": "107x",
    "state": "FAILED",
    "archive_path": PATH,
    "session": "tomato-boar",
    "launch": {"job_definition": {}, "backend": "inline"},
}


def test_delay_doubles_from_backoff_up_to_the_cap_jittered_over_its_upper_half():
    policy = {"limit": 5, "backoff": 2, "max_backoff": 5}
    assert retry.delay(policy, 1, rand=lambda: 0.0) == 1.0
    assert retry.delay(policy, 1, rand=lambda: 1.0) == 2.0
    assert retry.delay(policy, 2, rand=lambda: 1.0) == 4.0
    assert retry.delay(policy, 3, rand=lambda: 1.0) == 5.0  # 8 capped at 5
    assert retry.delay({"limit": 2}, 1, rand=lambda: 1.0) == 1.0  # defaults: 1 s


def test_on_matches_a_status_or_words_of_the_reason():
    assert retry.matches({"limit": 2}, {"status": "KILLED"})
    assert retry.matches({"on": ["killed"]}, {"status": "KILLED"})
    assert retry.matches({"on": ["timeout"]}, {"reason": "Compute TIMEOUT after 60 s"})
    assert retry.matches({"on": ["salsa"]}, {"error": "out of salsa"})
    assert not retry.matches({"on": ["timeout"]}, {"status": "FAILED", "reason": "oom"})
    assert retry.matches({"on": ["FAILED"]}, None)


def test_a_cancel_is_never_retried_whatever_the_policy_says():
    for policy in ({"limit": 3}, {"limit": 3, "on": ["cancelled", "FAILED", "no longer"]}):
        assert retry.matches(policy, {"reason": "cancelled: no longer needed"})
        assert not retry.matches(
            policy, {"reason": "cancelled: no longer needed", "cancelled": True}
        )


def test_should_retry_below_the_limit_only():
    job = {**JOB, "launch": {**JOB["launch"], "retry": {"limit": 2}}}
    assert retry.should_retry(job, {})
    assert not retry.should_retry({**job, "attempt": 2}, {})
    assert not retry.should_retry({**job, "state": "FINISHED"}, {})
    assert not retry.should_retry(JOB, {})  # no policy


def test_refusal_names_the_state_and_that_only_failed_jobs_are_retried():
    assert retry.refusal(JOB) is None
    assert retry.refusal({**JOB, "state": "RUNNING"}) == (
        "job 107x is RUNNING: only a FAILED job can be retried"
    )
    assert "not started by a launch" in str(retry.refusal({**JOB, "launch": None}))


def test_the_next_attempt_gets_a_new_instancing_directory_unless_not_instanced():
    new = retry.next_archive_path(JOB, 2, clock=lambda: 0.0)
    assert new == "/products/v2/p/l/d/tomato-boar-2-19700101T000000Z"
    flat = {**JOB, "archive_path": "/products/v2/p/l/d", "launch": {"instanced": False}}
    assert retry.next_archive_path(flat, 2) == "/products/v2/p/l/d"
    # A job launched before ``instanced`` was recorded: told by its path.
    assert retry.instanced(JOB)
    assert not retry.instanced({**JOB, "archive_path": "/products/v2/p/l/d"})
    assert retry.attempt_of(JOB) == 1 and retry.attempt_of({"attempt": 3}) == 3
