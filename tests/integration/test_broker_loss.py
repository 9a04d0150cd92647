"""A Redis broker restarted without its data: every accepted event is applied anyway.

The queues, and the messages in them, are gone; the executions, stored before their
messages were published, are still SUBMITTED. A running worker finds its sentinel key
gone when its connection comes back (or at its next check) and re-publishes every
execution left SUBMITTED from before the restart at once — instead of waiting for the
backstop sweep (``bus.recover_after`` + ``bus.recover_interval``, 90 s by default,
which this test leaves as it is so that only the quick path can pass it).

The machine's shared Redis cannot be restarted, so this test runs a ``redis-server`` of
its own (``--save ""``: it comes back empty). It asserts convergence, not speed; the
time it took is printed (run with ``-s``) and recorded in ``recovery-seconds.txt``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelinejobs.adapters.bus.redis_watch import SENTINEL

from .conftest import _answers, _free_port, _missing, system_env, wait_for

COMPONENTS = [{"id": "broker-loss-app", "inputs": {}, "parameters": {}}]


def make_jobs(system, count: int) -> list[tuple[str, str]]:
    """``count`` distinct jobs: (uuid, update token)."""
    runtime = system.runtime
    pipeline = runtime.pipelines.create({"name": "loss", "components": COMPONENTS}).pipeline
    made = []
    for n in range(count):
        job = runtime.jobs.create(
            pipeline_uuid=pipeline["uuid"], linkage=[f"sample.tacc.loss{n}"], data={"n": n}
        ).job
        made.append((job["uuid"], runtime.tokens.update_token(job["uuid"])))
    return made


class OwnRedis:
    """A redis-server of the test's own, which it can restart empty."""

    def __init__(self, binary: str, workdir: Path) -> None:
        self.binary, self.workdir = binary, workdir
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not _answers("127.0.0.1", self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                pytest.fail(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def restart_empty(self) -> float:
        """Stop it and start it again with nothing in it; when it answers again."""
        self.stop()
        self.start()
        return time.monotonic()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("no redis-server installed: this test restarts a Redis of its own")
    server = OwnRedis(str(binary), tmp_path)
    server.start()
    yield server
    server.stop()


def test_every_event_is_applied_after_redis_restarts_empty(
    tmp_path: Path, own_redis: OwnRedis, workers, client_system
):
    import redis

    env = system_env(tmp_path, own_redis.url)
    env.pop("PIPELINEJOBS_BUS_VISIBILITY_TIMEOUT")  # nothing here is killed mid-message
    system = client_system(env)
    runtime = system.runtime
    jobs, per_job = 20, 10
    made = make_jobs(system, jobs)
    worker = workers.start(env, actors="jobs-manager", concurrency=2)
    broker = redis.Redis.from_url(own_redis.url)
    # Ready, and its first broker check has left the sentinel a loss will be told by.
    wait_for(lambda: broker.get(SENTINEL), 30, "the worker's first broker check", workers.logs)
    broker.close()

    # Stopped, the worker takes nothing: every event below waits in Redis.
    os.killpg(worker.pid, signal.SIGSTOP)
    try:
        sent = [
            system.send(
                "jobs-manager",
                {"uuid": uuid, "name": "update", "token": token, "data": {"n": n}},
            )["id"]
            for n in range(per_job)
            for uuid, token in made
        ]
        restarted = own_redis.restart_empty()
    finally:
        os.killpg(worker.pid, signal.SIGCONT)

    def unfinished() -> str:
        left = [e for e in sent if runtime.executions.get(e)["status"] != "COMPLETE"]
        return f"{len(left)} of {len(sent)} not applied\n{workers.logs()[-6000:]}"

    wait_for(
        lambda: runtime.store.count("executions", {"status": "COMPLETE"}) == len(sent),
        60,
        "every event accepted before the restart to be applied",
        unfinished,
    )
    seconds = time.monotonic() - restarted
    print(f"\n{len(sent)} events applied {seconds:.1f} s after Redis restarted empty")
    (tmp_path / "recovery-seconds.txt").write_text(f"{seconds:.2f}\n")
    for uuid, _ in made:
        assert runtime.jobs.get(uuid)["version"] == per_job  # each event applied once
    logs = workers.logs()
    assert "lost its queues" in logs
    assert all(runtime.executions.get(e)["status"] == "COMPLETE" for e in sent)


def test_a_channel_cut_off_from_its_connection_raises_a_connection_error(redis_url: str):
    """After a lost connection Celery collects the consumer's connection (the transport
    forgets it), then closes it again, and closing the channel restores unacknowledged
    messages: that must fail as a connection error, which kombu ignores there, not as
    the AttributeError that used to end the worker ("Unrecoverable error")."""
    from pipelinejobs.adapters.bus.celery import make_app
    from pipelinejobs.config import BusSettings

    app = make_app(BusSettings(), redis_url, ["jobs-manager"])
    conn = app.connection_for_write()
    channel = conn.default_channel
    ignored = tuple(conn.connection_errors)
    channel._disconnect_pools()  # a client now has to be built anew
    conn.collect()
    with pytest.raises(ignored):
        channel._create_client()
