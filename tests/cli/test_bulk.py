"""``bulk`` and ``runs cancel|retry`` (issue 15), against a served gateway (the
fixtures of test_people.py): the dry run, the confirmation (asked on a terminal,
``--yes``, ``--confirm N``), the real bulk action and following it to a summary."""

from __future__ import annotations

import io
import json
import time
from typing import Any

import pytest

from pipelinejobs.cli import bulk, main
from tests.cli.test_people import APP, PIPELINE, Served, pairs
from tests.cli.test_people import served as served  # noqa: F401 (a fixture)

#: Follow fast, and never for ever.
FOLLOW = ("--interval", "0.02", "--timeout", "30")


class Terminal(io.StringIO):
    """stdin as a terminal a person answers on."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """stdin is not a terminal unless a test says so."""
    monkeypatch.setattr("sys.stdin", io.StringIO(""))


def pipeline(served: Served) -> str:
    code, out, _ = served.run("pipelines-manager", PIPELINE, "--sync")
    assert code == 0
    return pairs(out)["uuid"]


def launch(served: Served, sample: str, run: str) -> dict[str, str]:
    """A job launched in ``run`` on the inline backend, which reports only RUNNING;
    not indexed automatically, so a finished one stays FINISHED (INDEXING, which a
    cancel acts on, would race with the counts the tests expect)."""
    message = {
        "parameters": {"sample_id": sample},
        "job_definition": {"appId": APP, "report": ["RUNNING"]},
        "run": run,
        "index": False,
    }
    code, out, err = served.run("launcher-proxy", message, "--sync")
    assert (code, err) == (0, "")
    return pairs(out)


def states(served: Served, uuids: list[str]) -> list[str]:
    return [served.rt.jobs.get(u)["state"] for u in uuids]


def settle(served: Served, uuids: list[str], state: str) -> None:
    """Wait (with a deadline) until every job is in ``state``."""
    deadline = time.monotonic() + 20
    while states(served, uuids) != [state] * len(uuids):
        assert time.monotonic() < deadline, states(served, uuids)
        time.sleep(0.02)


def batch(served: Served, n: int, name: str = "batch") -> tuple[str, list[dict[str, str]]]:
    """A run of ``n`` RUNNING jobs."""
    uuid = pipeline(served)
    code, _, err = served.cli("runs", "create", "--pipeline-uuid", uuid, "--name", name)
    assert (code, err) == (0, "")
    run = served.rt.ids.run(uuid, name)
    jobs = [launch(served, f"sample.tacc.{name}.{i}", run) for i in range(n)]
    settle(served, [j["uuid"] for j in jobs], "RUNNING")
    return run, jobs


def finish(served: Served, job: dict[str, str]) -> None:
    event = {"uuid": job["uuid"], "name": "finish", "token": job["token"]}
    assert served.run("jobs-manager", event, "--sync")[0] == 0


def documents(out: str) -> list[Any]:
    """The JSON documents printed one after the other."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while out[at:].strip():
        at += len(out[at:]) - len(out[at:].lstrip())
        doc, at = decoder.raw_decode(out, at)
        found.append(doc)
    return found


def test_a_dry_run_prints_the_count_the_states_and_a_sample(served: Served) -> None:
    run, jobs = batch(served, 3)
    finish(served, jobs[0])
    uuids = [j["uuid"] for j in jobs]

    code, out, err = served.cli("bulk", "cancel", "--filter", f"run={run}", "--dry-run")
    assert (code, err) == (0, "")
    shown = pairs(out)
    assert (shown["operation"], shown["count"], shown["matched"]) == ("cancel", "2", "3")
    assert "RUNNING" in shown["states"].split(", ")
    rows = [line.split() for line in out.splitlines() if line.startswith(tuple(uuids))]
    assert sorted(r[0] for r in rows) == sorted(uuids[1:]) and {r[1] for r in rows} == {"RUNNING"}
    assert states(served, uuids) == ["FINISHED", "RUNNING", "RUNNING"]
    assert served.rt.store.count("bulk") == 0


def test_bulk_cancel_with_yes_cancels_the_runs_running_jobs_and_sums_up(served: Served) -> None:
    run, jobs = batch(served, 3)
    uuids = [j["uuid"] for j in jobs]

    code, out, err = served.cli(
        "bulk", "cancel", "--filter", f"run={run}", "--filter", "state=running",
        "--yes", "--reason", "wrong reagent", *FOLLOW,
    )  # fmt: skip
    assert code == 0, err
    assert states(served, uuids) == ["FAILED"] * 3
    bulk_id = served.rt.store.find("bulk", {}, limit=1).items[0]["id"]
    lines = out.splitlines()
    assert lines[-2] == f"bulk {bulk_id}: cancel of 3 jobs, 3 sent, 0 skipped"
    assert lines[-1] == f"bulk {bulk_id} COMPLETE: cancel of 3 jobs: 3 done, 0 errors, 0 skipped"
    # The progress on stderr (not a terminal: the last state on a line of its own).
    assert err.splitlines()[-1].startswith("[########################] 100%  3/3 jobs: 3 done")
    history = served.rt.jobs.history(uuids[0], 0, 100).entries
    assert history[-1]["data"]["reason"] == "cancelled: wrong reagent"

    code, out, err = served.cli("bulk", "list")
    assert (code, err) == (0, "")
    assert out.splitlines()[1].split()[:3] == [bulk_id, "cancel", "3"]
    code, out, err = served.cli("bulk", "watch", bulk_id, *FOLLOW)  # finished: the summary
    assert code == 0 and out.splitlines()[-1].endswith("3 done, 0 errors, 0 skipped")


def test_a_stale_confirm_exits_1_with_the_409_message_and_changes_nothing(
    served: Served,
) -> None:
    run, jobs = batch(served, 2)
    code, out, err = served.cli("bulk", "cancel", "--filter", f"run={run}", "--confirm", "3")
    assert code == 1
    assert pairs(out)["count"] == "2"
    assert err == (
        "pipelinejobs: error: 409: the filter now selects 2 jobs, not the 3 confirmed: the "
        "jobs changed since the dry run; run it again and confirm its count\n"
    )
    assert states(served, [j["uuid"] for j in jobs]) == ["RUNNING"] * 2
    assert served.rt.store.count("bulk") == 0


def test_runs_cancel_then_runs_retry_retries_the_failed_jobs(served: Served) -> None:
    run, jobs = batch(served, 3)
    uuids = [j["uuid"] for j in jobs]
    finish(served, jobs[0])
    code, out, err = served.cli("runs", "cancel", run, "--yes", *FOLLOW)
    assert code == 0, err
    assert out.splitlines()[-1].endswith("2 done, 0 errors, 0 skipped")
    assert states(served, uuids) == ["FINISHED", "FAILED", "FAILED"]

    code, out, err = served.cli("runs", "retry", run, "--yes", "--reason", "new tortillas",
                                *FOLLOW)  # fmt: skip
    assert code == 0, err
    assert pairs(out)["count"] == "2" and pairs(out)["states"] == "FAILED"
    assert out.splitlines()[-1].endswith("2 done, 0 errors, 0 skipped")
    settle(served, uuids[1:], "RUNNING")
    assert [served.rt.jobs.get(u).get("attempt") for u in uuids] == [None, 2, 2]
    assert states(served, uuids[:1]) == ["FINISHED"]


def test_failed_and_refused_jobs_are_listed_and_exit_1(served: Served) -> None:
    run, jobs = batch(served, 1)
    # A job created without a launch: a retry has nothing to replay, and is refused.
    created = {"action": "create", "pipeline_uuid": pipeline(served), "run": run,
               "parameters": {"sample_id": "sample.tacc.created"}}  # fmt: skip
    code, out, _ = served.run("launcher-proxy", created, "--sync")
    bare = pairs(out)
    assert code == 0
    assert served.cli("runs", "cancel", run, "--yes", *FOLLOW)[0] == 0
    settle(served, [jobs[0]["uuid"], bare["uuid"]], "FAILED")

    code, out, err = served.cli("bulk", "retry", "--filter", f"run={run}", "--yes", *FOLLOW)
    assert code == 1
    # Refused when its message was sent (the launcher-proxy's admit): skipped.
    summary, header, *rows = out.split("\nbulk ")[-1].splitlines()
    assert summary.endswith("COMPLETE: retry of 2 jobs: 1 done, 0 errors, 1 skipped"), out
    assert header.split() == ["UUID", "OUTCOME", "MESSAGE"]
    assert [row.split()[:2] for row in rows] == [[bare["uuid"], "refused"]]
    assert "was not started by a launch" in rows[0]
    assert [served.rt.jobs.get(j["uuid"]).get("attempt") for j in (jobs[0], bare)] == [2, None]


def test_an_unknown_filter_key_is_a_usage_error_naming_the_keys(
    served: Served, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main(["bulk", "cancel", "--filter", "colour=red", "--url", served.url])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown filter 'colour'" in err
    assert "state, pipeline_uuid, linkage, updated_since, tag, owner, run" in err
    with pytest.raises(SystemExit):
        main(["bulk", "cancel", "--filter", "state=done"])
    assert "unknown state 'done'" in capsys.readouterr().err


def test_a_filter_given_twice_or_none_is_refused(served: Served) -> None:
    code, out, err = served.cli("bulk", "cancel", "--filter", "run=a", "--filter", "run=b")
    assert code == 2 and out == "" and "--filter run= is given twice" in err
    code, out, err = served.cli("bulk", "retire")
    assert code == 2 and "at least one --filter" in err
    code, out, err = served.cli("bulk", "tag", "--filter", "state=FAILED")
    assert code == 2 and "bulk tag needs --set" in err


def test_off_a_terminal_without_yes_nothing_changes_and_it_says_how_to_go_on(
    served: Served,
) -> None:
    run, jobs = batch(served, 2)
    code, out, err = served.cli("bulk", "cancel", "--filter", f"run={run}")
    assert code == 1 and pairs(out)["count"] == "2"
    assert "nothing was changed" in err and "--yes" in err and "--confirm 2" in err
    assert states(served, [j["uuid"] for j in jobs]) == ["RUNNING"] * 2
    assert served.rt.store.count("bulk") == 0


def test_on_a_terminal_it_asks(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    run, jobs = batch(served, 2)
    uuids = [j["uuid"] for j in jobs]
    monkeypatch.setattr("sys.stdin", Terminal("n\n"))
    code, out, err = served.cli("runs", "cancel", run)
    assert code == 1 and err == "Cancel 2 jobs? [y/N] pipelinejobs: nothing was changed\n"
    assert states(served, uuids) == ["RUNNING"] * 2

    monkeypatch.setattr("sys.stdin", Terminal("y\n"))
    code, out, err = served.cli("runs", "cancel", run, *FOLLOW)
    assert code == 0 and err.startswith("Cancel 2 jobs? [y/N] ")
    assert states(served, uuids) == ["FAILED"] * 2


def test_bulk_tag_without_following_then_json(served: Served) -> None:
    run, jobs = batch(served, 2)
    uuids = [j["uuid"] for j in jobs]
    code, out, err = served.cli("bulk", "tag", "--filter", f"run={run}", "--set",
                                "reviewed=yes", "--yes", "--no-follow")  # fmt: skip
    assert (code, err) == (0, "")
    bulk_id = out.splitlines()[-1].removeprefix("follow it: pipelinejobs bulk watch ")
    deadline = time.monotonic() + 20
    while [served.rt.jobs.get(u).get("tags") for u in uuids] != [{"reviewed": "yes"}] * 2:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    code, out, err = served.cli("bulk", "watch", bulk_id, *FOLLOW)
    assert code == 0 and out.splitlines()[-1].endswith("2 done, 0 errors, 0 skipped")

    code, out, err = served.cli("bulk", "tag", "--filter", f"run={run}", "--remove",
                                "reviewed", "--yes", "--json", *FOLLOW)  # fmt: skip
    assert code == 0, err
    dry, real, view = documents(out)
    assert dry["result"]["result"]["count"] == 2 and dry["result"]["result"]["dry_run"]
    assert real["result"]["result"]["total"] == 2
    assert view["result"]["status"] == "COMPLETE" and view["result"]["counts"]["done"] == 2
    assert [served.rt.jobs.get(u).get("tags") or {} for u in uuids] == [{}, {}]


def test_jobs_list_by_run(served: Served) -> None:
    run, jobs = batch(served, 2)
    other, _ = batch(served, 1, "other")
    code, out, err = served.cli("jobs", "list", "--run", run)
    assert (code, err) == (0, "")
    assert sorted(line.split()[0] for line in out.splitlines()[1:]) == sorted(
        j["uuid"] for j in jobs
    )


def test_the_progress_line() -> None:
    counts = {"done": 3, "errors": 1, "skipped": 0, "running": 2, "pending": 4}
    assert bulk.progress_line({"status": "RUNNING", "total": 10, "counts": counts}) == (
        "[##########..............]  40%  4/10 jobs: 3 done, 1 errors, 0 skipped, 2 running, "
        "4 pending  RUNNING"
    )
    assert bulk.progress_line({"status": "SENDING", "total": 0, "counts": {}}) == (
        "selecting the jobs: 0 done, 0 errors, 0 skipped  SENDING"
    )
