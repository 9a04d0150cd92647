"""The whole flow through real queues: register → launch → run → finish → index →
indexed → FINISHED with file records, every hop an execution with its log lines.

Run three ways: embedded (in-process broker, worker threads, SQLite), and with
separate ``pipelinejobs worker`` processes on a real Redis and on RabbitMQ.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelinejobs.config import load_config
from pipelinejobs.runtime.system import System

from .conftest import finished, system_env, wait_for

APP = "tacobot9000-0.1.0u1"
PIPELINE = {
    "name": "Tacobot 9000",
    "description": "Makes breakfast tacos out of CSV files",
    "components": [{"id": APP, "inputs": {}, "parameters": {"CONTAINER_IMAGE": "sd2e/taco:0.1"}}],
    "processing_levels": ["2"],
}
LAUNCH = {
    "parameters": {"sample_id": "sample.tacc.abcde"},
    "job_definition": {
        "appId": APP,
        "name": "TACObot job",
        "inputs": {"file1": "agave://data.tacc.cloud/examples/tacobot/test1.txt"},
        "parameters": {"salsa": True, "avocado": False, "cheese": True},
        "maxRunTime": "01:00:00",
        "outputs": {
            "sample.tacc.abcde/result.csv": "a,b\n1,2\n",
            "sample.tacc.abcde/plot.png": "not really a png",
            "notes.txt": "left out by the filters",
        },
    },
    "index_patterns": ["\\.csv$", "\\.png$"],
    "processing_level": "2",
}


def walk_the_flow(system: System, timeout: float = 60.0) -> None:
    runtime = system.runtime
    created = system.send("pipelines-manager", PIPELINE)
    created = wait_for(lambda: finished(system, created["id"]), timeout, "pipeline creation")
    assert created["status"] == "COMPLETE", created
    assert created["result"]["created"] is True
    pipeline_uuid = created["result"]["uuid"]
    assert any("Action selected: create" in line for line in created["logs"])

    launch = system.send("launcher-proxy", LAUNCH)
    launch = wait_for(lambda: finished(system, launch["id"]), timeout, "the launch")
    assert launch["status"] == "COMPLETE", launch
    job_uuid = launch["result"]["uuid"]
    assert launch["result"]["pipeline_uuid"] == pipeline_uuid

    def indexed_job() -> dict | None:
        job = runtime.store.get("jobs", job_uuid)
        return job if job and job["last_event"] == "indexed" else None

    job = wait_for(
        indexed_job,
        timeout,
        "the job to be indexed",
        lambda: str(
            [
                (e["actor"], e["status"], e.get("error"))
                for e in runtime.store.find("executions").items
            ]
        ),
    )
    assert job["state"] == "FINISHED"
    names = [h["name"] for h in runtime.jobs.record(job_uuid)["history"]]
    assert names[0] == "create" and names[1] == "run"
    assert names.index("finish") < names.index("index") < names.index("indexed")
    assert names.count("finish") == names.count("index") == names.count("indexed") == 1

    files = runtime.store.find("files", {"job_uuid": job_uuid}).items
    assert sorted(f["relative_path"] for f in files) == [
        "sample.tacc.abcde/plot.png",
        "sample.tacc.abcde/result.csv",
    ]
    assert {f["level"] for f in files} == {"2"}
    assert all(f["child_of"] == ["sample.tacc.abcde"] for f in files)

    # Every hop was a message through a queue, recorded as an execution with log lines.
    executions = wait_for(
        lambda: (lambda items: items if all(e["status"] != "RUNNING" for e in items) else None)(
            runtime.store.find("executions", limit=100).items
        ),
        timeout,
        "every execution to finish",
    )
    by_actor: dict[str, list[dict]] = {}
    for e in executions:
        by_actor.setdefault(e["actor"], []).append(e)
    assert sorted(by_actor) == [
        "jobs-indexer",
        "jobs-manager",
        "launcher-proxy",
        "pipelines-manager",
    ]
    assert len(by_actor["jobs-indexer"]) == 1
    assert len(by_actor["jobs-manager"]) == 3  # RUNNING and FINISHED callbacks, indexed
    for e in executions:
        assert e["status"] == "COMPLETE", e
        assert e["logs"], f"execution {e['id']} of {e['actor']} has no log lines"
    index_exec = by_actor["jobs-indexer"][0]
    assert index_exec["parent"] in {e["id"] for e in by_actor["jobs-manager"]}
    assert index_exec["result"]["indexed"] == 2 and index_exec["result"]["seen"] == 3


def test_flow_embedded(tmp_path: Path) -> None:
    config = load_config(env={}, overrides={"system": {"data_dir": str(tmp_path / "data")}})
    with System(config).start_embedded() as system:
        assert system.config.broker_url.startswith("memory://")
        assert system.config.store.backend == "sqlite"
        walk_the_flow(system)


def test_flow_on_redis_with_worker_processes(tmp_path, redis_url, workers, client_system):
    env = system_env(tmp_path, redis_url)
    workers.start(env, actors="pipelines-manager,launcher-proxy", concurrency=1)
    workers.start(env, actors="jobs-manager,jobs-indexer", concurrency=2)
    system = client_system(env)
    try:
        walk_the_flow(system)
    except BaseException:
        print(workers.logs())
        raise


@pytest.mark.slow
def test_flow_on_rabbitmq_with_a_worker_process(tmp_path, rabbitmq_url, workers, client_system):
    env = system_env(tmp_path, rabbitmq_url)
    workers.start(env, concurrency=2)
    system = client_system(env)
    try:
        walk_the_flow(system)
    except BaseException:
        print(workers.logs())
        raise
