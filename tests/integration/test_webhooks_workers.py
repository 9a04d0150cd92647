"""Webhooks in the production shape (issue 16): ``pipelinejobs worker`` processes
(prefork children) on Redis apply the events, gather their notices per process for
the notice window and deliver in batches. A 20-job run reaches a loopback receiver
whole — every event once after de-duplication, in order per job, signed — in fewer
POSTs than events, and no notice is left behind in a child's window."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

from pipelinejobs.runtime.system import System
from tests.webhook_receiver import receiver

from .conftest import Workers, finished, system_env, wait_for

APP = "webhook-workers-app"


def test_workers_deliver_a_run_in_batches(
    tmp_path: Path, redis_url: str, workers: Workers, client_system: Callable[..., System]
) -> None:
    env = system_env(
        tmp_path,
        redis_url,
        PIPELINEJOBS_LAUNCHER_BACKEND="inline",
        PIPELINEJOBS_WEBHOOKS_ALLOW_PRIVATE="true",
        PIPELINEJOBS_WEBHOOKS_CACHE_SECONDS="0.2",
    )
    system = client_system(env)
    rt = system.runtime
    with receiver() as hook:
        made, hook.secret = rt.notices.subscriptions.create(
            {"url": hook.url, "batch": 25}, owner="admin0000000", role="admin",
            allow_private=True,
        )  # fmt: skip
        for _ in range(2):
            workers.start(env, concurrency=2)
        pipeline = rt.pipelines.create(
            {"name": "Hooked", "components": [{"id": APP, "inputs": {}, "parameters": {}}]}
        ).pipeline["uuid"]
        sent = [
            rt.submit("launcher-proxy", {
                "parameters": {"sample_id": f"sample.hook.w{i}"}, "pipeline_uuid": pipeline,
                "job_definition": {"appId": APP}, "index": False,
            })["id"]
            for i in range(20)
        ]  # fmt: skip
        uuids = []
        for execution in sent:
            done = wait_for(lambda e=execution: finished(system, e), 90, "a launch", workers.logs)
            assert isinstance(done, dict) and done["status"] == "COMPLETE", done
            uuids.append(done["result"]["uuid"])

        def counts() -> dict[str, int]:
            return {u: int(rt.jobs.get(u)["event_count"]) for u in uuids}

        def complete() -> bool:
            got, want = hook.by_job(), counts()
            return all(len(got.get(u, [])) == n for u, n in want.items())

        hook.wait_for(complete, timeout=60)
        want = counts()
        got = hook.by_job()
        for uuid in uuids:
            assert want[uuid] >= 3  # create, run, finish at least
            assert got[uuid] == list(range(1, want[uuid] + 1))
        assert all(a.status == 200 and "batch_id" in a.body for a in hook.arrivals)
        assert len(hook.arrivals) < sum(want.values())
        assert rt.notices.subscriptions.get(made["id"])["failures"] == 0


def test_a_worker_stopping_sends_the_notices_it_gathered(
    tmp_path: Path, redis_url: str, workers: Workers, client_system: Callable[..., System]
) -> None:
    """A prefork worker whose notice window is an hour applies a job's events, then is
    stopped (SIGTERM, a warm shutdown): its children send what they gathered as they
    exit, and the next worker delivers it."""
    env = system_env(
        tmp_path, redis_url,
        PIPELINEJOBS_LAUNCHER_BACKEND="inline", PIPELINEJOBS_WEBHOOKS_ALLOW_PRIVATE="true",
        PIPELINEJOBS_WEBHOOKS_CACHE_SECONDS="0.2",
    )  # fmt: skip
    system = client_system(env)
    rt = system.runtime
    with receiver() as hook:
        _, hook.secret = rt.notices.subscriptions.create(
            {"url": hook.url}, owner="admin0000000", role="admin", allow_private=True
        )
        first = workers.start({**env, "PIPELINEJOBS_WEBHOOKS_NOTICE_WINDOW": "3600"})
        pipeline = rt.pipelines.create(
            {"name": "Hooked", "components": [{"id": APP, "inputs": {}, "parameters": {}}]}
        ).pipeline["uuid"]
        sent = rt.submit("launcher-proxy", {
            "parameters": {"sample_id": "sample.hook.stop"}, "pipeline_uuid": pipeline,
            "job_definition": {"appId": APP}, "index": False,
        })["id"]  # fmt: skip
        done = wait_for(lambda: finished(system, sent), 90, "the launch", workers.logs)
        assert isinstance(done, dict) and done["status"] == "COMPLETE", done
        uuid = done["result"]["uuid"]
        assert hook.arrivals == []  # gathered, not sent: the window is an hour
        os.killpg(first.pid, signal.SIGTERM)
        first.wait(30)
        workers.start(env)  # delivers the notices the first one sent as it stopped
        count = int(rt.jobs.get(uuid)["event_count"])
        hook.wait_for(lambda: hook.by_job().get(uuid) == list(range(1, count + 1)), timeout=60)
