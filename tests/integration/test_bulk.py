"""Bulk cancel end to end (issue 15): a run of 20 real local jobs, all computing, is
cancelled by one bulk action over HTTP on the embedded system, and every one of the
20 computes is stopped — not only marked FAILED."""

from __future__ import annotations

import subprocess
import uuid as uuids
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from .conftest import _free_port, wait_for
from .server import Server, start_server
from .test_local_jobs import launch, runs

JOBS = 20


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = start_server(tmp_path_factory.mktemp("bulk") / "data", _free_port())
    yield running
    running.stop()


def post(server: Server, actor: str, message: dict[str, Any]) -> Any:
    answer = requests.post(
        f"{server.url}/actors/v2/{actor}/messages",
        params={"sync": "true"},
        headers={"Authorization": f"Bearer {server.admin_key}"},
        json=message,
        timeout=60,
    )
    return answer


def get(server: Server, path: str, **params: Any) -> Any:
    answer = requests.get(
        f"{server.url}{path}",
        params=params,
        headers={"Authorization": f"Bearer {server.admin_key}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["result"]


def computing(marker: str) -> int:
    """How many processes run the command carrying ``marker``."""
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return len(found.stdout.split())


def test_bulk_cancel_of_a_run_of_20_running_local_jobs_stops_all_20_computes(
    server: Server,
) -> None:
    marker = f"bulk-{uuids.uuid4().hex[:12]}"
    pipeline = runs(server, "sleeper", f"import time; time.sleep(600)  # {marker}")
    made = post(server, "launcher-proxy", {"action": "create_run", "pipeline_uuid": pipeline,
                                           "name": "twenty sleepers"})  # fmt: skip
    assert made.status_code == 200, made.text
    run = made.json()["result"]["result"]["uuid"]
    jobs = [
        launch(
            server,
            {"maxRunTime": "00:10:00"},
            pipeline,
            run=run,
            parameters={"sample_id": f"sample.tacc.sleep.{i}"},
        )["uuid"]  # fmt: skip
        for i in range(JOBS)
    ]
    wait_for(
        lambda: get(server, f"/runs/{run}")["counts"]["RUNNING"] == JOBS or None,
        60, "20 RUNNING jobs", server.output,
    )  # fmt: skip
    wait_for(lambda: computing(marker) >= JOBS or None, 30, "20 computes", server.output)

    dry = post(server, "jobs-manager", {"action": "bulk", "operation": "cancel",
                                        "filter": {"run": run}, "dry_run": True})  # fmt: skip
    assert dry.json()["result"]["result"]["count"] == JOBS, dry.text
    sent = post(server, "jobs-manager", {"action": "bulk", "operation": "cancel",
                                         "filter": {"run": run}, "confirm": JOBS,
                                         "reason": "wrong media"})  # fmt: skip
    assert sent.status_code == 200, sent.text
    bulk = sent.json()["result"]["result"]["bulk"]

    done = wait_for(
        lambda: (b := get(server, f"/bulk/{bulk}"))["status"] == "COMPLETE" and b or None,
        60, "the bulk cancel to complete", server.output,
    )  # fmt: skip
    assert done["counts"]["done"] == JOBS and done["counts"]["errors"] == 0, done
    wait_for(lambda: computing(marker) == 0 or None, 30, "every compute to stop", server.output)
    shown = get(server, f"/runs/{run}")
    assert shown["status"] == "FAILED" and shown["counts"]["FAILED"] == JOBS
    for uuid in jobs:
        history = get(server, f"/jobs/{uuid}/history")["history"]
        fail = next(e for e in history if e["name"] == "fail")
        assert fail["data"]["reason"] == "cancelled: wrong media"
