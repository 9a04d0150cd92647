"""The remote commands print for people: results on stdout (``key: value`` lines, short
tables), the gateway's answer with ``--json``, nothing on stderr unless something is
wrong or ``-v`` asks; ``jobs list --state`` in any case; help without reST markup.

Against a real gateway on a thread (werkzeug's server around the app, on a stub-bus
runtime whose queue a second thread drains, so ``run --sync`` gets its result).
"""

from __future__ import annotations

import argparse
import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from pipelinejobs.cli import build_parser, main
from pipelinejobs.gateway import create_app
from pipelinejobs.runtime.dispatch import Runtime
from tests.support import make_runtime
from tests.support import stub as bus

APP = "tacobot9000-0.1.0u1"
PIPELINE = {"name": "Tacobot 9000", "components": [{"id": APP, "inputs": {}, "parameters": {}}]}
LAUNCH = {
    "parameters": {"sample_id": "sample.tacc.abcde"},
    # The inline backend reports RUNNING and FINISHED; the job is then indexed.
    "job_definition": {"appId": APP, "outputs": {"tacos.csv": "eggs\n2\n"}},
}


class Quiet(WSGIRequestHandler):
    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002
        pass


@dataclass
class Served:
    rt: Runtime
    url: str
    key: str
    capsys: pytest.CaptureFixture[str]

    def cli(self, *argv: str) -> tuple[int, str, str]:
        code = main([*argv, "--url", self.url, "--key", self.key])
        out, err = self.capsys.readouterr()
        return code, out, err

    def run(self, actor: str, message: dict[str, Any], *flags: str) -> tuple[int, str, str]:
        return self.cli("run", actor, "-m", json.dumps(message), *flags)


def serve(tmp_path: Path, capsys: pytest.CaptureFixture[str], pump: bool) -> Iterator[Served]:
    rt = make_runtime(tmp_path, "sqlite", gateway={"sync_timeout": 10 if pump else 0.2})
    app = create_app(rt)
    key, _ = app.config["PIPELINEJOBS"].keys.create("admin")
    server = make_server("127.0.0.1", 0, app, threaded=True, request_handler=Quiet)
    threads = [threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)]
    stop = threading.Event()

    def drain() -> None:  # what a worker does: deliver whatever is queued
        while not stop.wait(0.01):
            bus(rt).join(fail_fast=False)

    if pump:
        threads.append(threading.Thread(target=drain, daemon=True))
    for thread in threads:
        thread.start()
    try:
        yield Served(rt, f"http://127.0.0.1:{server.server_port}", key, capsys)
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        for thread in threads:
            thread.join(5)
        rt.close()


@pytest.fixture
def served(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Served]:
    yield from serve(tmp_path, capsys, pump=True)


def pairs(out: str) -> dict[str, str]:
    """The ``key: value`` lines of an output."""
    found = {}
    for line in out.splitlines():
        key, sep, value = line.partition(":")
        if sep and " " not in key:
            found[key] = value.strip()
    return found


def launched(served: Served) -> dict[str, str]:
    """A job launched from the CLI, once it has been indexed (FINISHED for good)."""
    assert served.run("pipelines-manager", PIPELINE, "--sync")[0] == 0
    code, out, err = served.run("launcher-proxy", LAUNCH, "--sync")
    assert code == 0 and err == ""
    job = pairs(out)
    deadline = time.monotonic() + 20
    while served.rt.jobs.get(job["uuid"]).get("last_event") != "indexed":
        assert time.monotonic() < deadline, served.rt.jobs.get(job["uuid"])
        time.sleep(0.02)
    return job


def test_run_sync_prints_the_new_jobs_uuid_and_token_and_nothing_on_stderr(
    served: Served,
) -> None:
    code, out, err = served.run("pipelines-manager", PIPELINE, "--sync")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert re.fullmatch(r"execution \w{13}  COMPLETE", lines[0])
    assert pairs(out)["uuid"].startswith("106") and pairs(out)["created"] == "true"

    code, out, err = served.run("launcher-proxy", LAUNCH, "--sync")
    assert code == 0 and err == ""
    result = pairs(out)
    job = served.rt.jobs.get(result["uuid"])
    assert job["uuid"] == result["uuid"] and re.fullmatch(r"[0-9a-f]{16}", result["token"])
    assert result["launch.backend"] == "inline" and result["launch.outputs"] == "tacos.csv"


def test_run_without_sync_prints_the_execution_it_started(served: Served) -> None:
    code, out, err = served.run("pipelines-manager", PIPELINE)
    assert code == 0 and err == ""
    assert re.fullmatch(r"execution \w{13}  SUBMITTED\n", out)


def test_json_prints_the_gateways_answer_as_it_came(served: Served) -> None:
    code, out, err = served.run("pipelines-manager", PIPELINE, "--sync", "--json")
    assert code == 0 and err == ""
    answer = json.loads(out)
    assert answer["status"] == "success" and answer["version"]
    assert answer["result"]["status"] == "COMPLETE" and answer["result"]["result"]["uuid"]
    for argv in (
        ["executions", "pipelines-manager"],
        ["pipelines", "list"],
        ["jobs", "list"],
        ["nonces", "list", "jobs-manager"],
        ["logs", "pipelines-manager", answer["result"]["id"]],
    ):
        code, out, err = served.cli(*argv, "--json")
        assert code == 0 and err == "", argv
        assert json.loads(out)["status"] == "success", argv


def test_an_error_is_one_line_and_what_the_answer_adds_on_stderr(served: Served) -> None:
    code, out, err = served.run("jobs-manager", {"name": "finish", "foo": 1})
    assert code == 2 and out == ""
    first, *more = err.splitlines()
    assert first.startswith("pipelinejobs: error: 400: ") and "'uuid' is a required" in first
    # The message names the first complaint; every one is on stderr.
    assert any("'foo' was unexpected" in line for line in more)
    assert "Traceback" not in err
    # --json: the error's answer on stdout too, for a script.
    code, out, err = served.run("jobs-manager", {"name": "finish", "foo": 1}, "--json")
    assert code == 2 and json.loads(out)["status"] == "error"
    assert err.startswith("pipelinejobs: error: 400")


def test_an_execution_that_ended_error_says_where_its_log_is(served: Served) -> None:
    job = launched(served)
    event = {"uuid": job["uuid"], "name": "fail", "token": "0" * 16}
    code, out, err = served.run("jobs-manager", event, "--sync")
    assert code == 2 and out == ""
    assert "the token is not the update token" in err.splitlines()[0]
    assert re.search(r"its log: pipelinejobs logs jobs-manager \w{13}$", err.strip())
    assert "0" * 16 not in err


def test_verbose_traces_each_request_on_stderr_without_secrets(served: Served) -> None:
    job = launched(served)
    code, out, err = served.cli(
        "run", "jobs-manager", "-m", json.dumps({"uuid": job["uuid"], "name": "update"}),
        "-q", f"token={job['token']}", "-v",
    )  # fmt: skip
    assert code == 0 and re.fullmatch(r"execution \w{13}  SUBMITTED\n", out)
    assert err.splitlines() == [
        f"> POST {served.url}/actors/v2/jobs-manager/messages?token=********",
        err.splitlines()[1],
    ]
    assert re.fullmatch(r"< 200 OK \(\d+ ms\)", err.splitlines()[1])
    assert job["token"] not in err and served.key not in err
    # A nonce's id is the nonce: a trace does not show it either.
    code, out, _ = served.cli("nonces", "create", "jobs-manager", "--json")
    nonce = json.loads(out)["result"]["id"]
    code, out, err = served.cli("nonces", "delete", "jobs-manager", nonce, "-v")
    assert code == 0 and out == f"deleted nonce {nonce}\n"
    assert nonce not in err and "/nonces/********" in err


def test_lists_are_tables_and_shows_are_key_value_lines(served: Served) -> None:
    job = launched(served)
    code, out, err = served.cli("executions", "launcher-proxy")
    assert code == 0 and err == ""
    header, row = out.splitlines()
    assert header.split() == ["ID", "STATUS", "CREATED", "FINISHED"]
    assert row.split()[1] == "COMPLETE"
    code, out, err = served.cli("logs", "launcher-proxy", row.split()[0])
    assert code == 0 and err == "" and f"Created job {job['uuid']}" in out
    assert not out.lstrip().startswith("{")

    code, out, err = served.cli("jobs", "list")
    assert code == 0 and err == ""
    assert out.splitlines()[0].split() == ["UUID", "STATE", "UPDATED"]
    assert out.splitlines()[1].split()[:2] == [job["uuid"], "FINISHED"]
    code, out, err = served.cli("jobs", "show", job["uuid"])
    assert code == 0 and err == ""
    shown = pairs(out)
    assert shown["uuid"] == job["uuid"] and shown["state"] == "FINISHED"
    assert shown["child_of"] == "sample.tacc.abcde" and "token" not in shown
    assert "history (" in out and re.search(r"^  \S+Z\s+create", out, re.MULTILINE)

    code, out, err = served.cli("pipelines", "list")
    assert code == 0 and err == "" and out.splitlines()[0].split() == ["UUID", "STATUS", "NAME"]
    code, out, err = served.cli("pipelines", "show", job["pipeline_uuid"])
    assert code == 0 and err == "" and pairs(out)["name"] == "Tacobot 9000"

    code, out, err = served.cli("nonces", "create", "jobs-manager", "--max-uses", "2")
    assert code == 0 and err == "" and pairs(out)["uses"] == "2"
    code, out, err = served.cli("nonces", "list", "jobs-manager")
    assert code == 0 and err == "" and out.split()[:3] == ["ID", "LEVEL", "USES"]


@pytest.mark.parametrize("spelling", ["finished", "Finished", "FINISHED", "running,finished"])
def test_jobs_list_state_in_any_case(served: Served, spelling: str) -> None:
    job = launched(served)
    code, out, err = served.cli("jobs", "list", "--state", spelling)
    assert code == 0 and err == ""
    assert out.splitlines()[1].split()[:2] == [job["uuid"], "FINISHED"]
    code, out, _ = served.cli("jobs", "list", "--state", "failed")
    assert code == 0 and out == "no jobs in state FAILED\n"


def test_an_unknown_state_is_refused_listing_the_states(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["jobs", "list", "--state", "done"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "unknown state 'done'" in err
    assert "CREATED, RUNNING, FAILED, FINISHED" in err and "Traceback" not in err


def test_run_sync_that_is_still_running_says_so_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for served in serve(tmp_path, capsys, pump=False):  # nobody delivers: it waits 0.2 s
        code, out, err = served.run("pipelines-manager", PIPELINE, "--sync")
        assert code == 1
        assert re.fullmatch(r"execution (\w{13})  SUBMITTED\n", out)
        execution = out.split()[1]
        assert f"pipelinejobs executions watch pipelines-manager {execution}" in err


def parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from parsers(sub)


def test_help_has_no_restructuredtext_markup() -> None:
    found = list(parsers(build_parser()))
    assert len(found) >= 20  # the command and each subcommand
    for parser in found:
        text = parser.format_help()
        assert "``" not in text, parser.prog
        assert not re.search(r":(class|mod|func|meth|attr|data):`", text), parser.prog
