"""Real brokers and real worker processes.

Redis: the one on 127.0.0.1:6379 when it answers; otherwise a ``redis-server``
started here on a free port when one is installed; otherwise the tests skip — except
under ``CI=true``, where a missing Redis fails the run (a green CI must not hide it).
RabbitMQ: 127.0.0.1:5672 (guest/guest) when it answers, else those tests skip.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pipelinejobs.config import load_config
from pipelinejobs.runtime.executions import FINISHED_STATUSES
from pipelinejobs.runtime.system import System

#: A database of its own, flushed by every test that uses it; two suites running at once
#: on one machine (developers working side by side) each set their own.
REDIS_DB = int(os.environ.get("PIPELINEJOBS_TEST_REDIS_DB", "11"))
ROOT = Path(__file__).resolve().parents[2]


def _answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _missing(what: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} (CI=true: a missing broker fails the run instead of skipping)")
    pytest.skip(what)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """``redis://host:port`` of a Redis that answers."""
    if _answers("127.0.0.1", 6379):
        yield "redis://127.0.0.1:6379"
        return
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("no Redis on 127.0.0.1:6379 and no redis-server installed")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while not _answers("127.0.0.1", port):
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            _missing(f"redis-server did not start on port {port}")
        time.sleep(0.05)
    yield f"redis://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


@pytest.fixture
def redis_url(redis_server: str) -> str:
    """A flushed Redis database for one test."""
    import redis

    url = f"{redis_server}/{REDIS_DB}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    client.close()
    return url


@pytest.fixture(scope="session")
def rabbitmq_url() -> str:
    if not _answers("127.0.0.1", 5672):
        pytest.skip("no RabbitMQ on 127.0.0.1:5672")
    return "amqp://guest:guest@127.0.0.1:5672//"


def system_env(tmp_path: Path, broker_url: str, **extra: str) -> dict[str, str]:
    """Environment of a production-mode process sharing this test's store and storage."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINEJOBS_")}
    env.update(
        {
            "PIPELINEJOBS_SYSTEM_MODE": "production",
            "PIPELINEJOBS_SYSTEM_DATA_DIR": str(tmp_path / "data"),
            "PIPELINEJOBS_TOKENS_SECRET": "integration-secret-0123456789",
            "PIPELINEJOBS_TOKENS_ADMIN_SECRET": "integration-admin-0123456789",
            "PIPELINEJOBS_BUS_BROKER_URL": broker_url,
            # Short, so a message held by a killed worker comes back within seconds.
            "PIPELINEJOBS_BUS_VISIBILITY_TIMEOUT": "3",
            "PIPELINEJOBS_BUS_RESTORE_INTERVAL": "1",
            "PYTHONPATH": str(ROOT),
        }
    )
    env.update(extra)
    return env


class Workers:
    """Worker processes started with ``pipelinejobs worker``; stopped at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        env: dict[str, str],
        actors: str = "all",
        concurrency: int = 2,
        pool: str = "prefork",
        module: str = "pipelinejobs.cli",
        extra: tuple[str, ...] = (),
    ) -> subprocess.Popen[bytes]:
        """``module``: what runs ``worker`` (a test's own wrapper of the CLI);
        ``extra``: more of its flags."""
        log = open(self.tmp_path / f"worker-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "worker",
                "--actors",
                actors,
                "--concurrency",
                str(concurrency),
                "--pool",
                pool,
                "--loglevel",
                "INFO",
                *extra,
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL the worker and its pool children: nothing gets to clean up."""
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.tmp_path.glob("worker-*.log"))
        )

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(5)


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    w = Workers(tmp_path)
    yield w
    w.stop()


@pytest.fixture
def client_system() -> Iterator[Callable[[dict[str, str]], System]]:
    """A System built from the same environment the workers get (it only submits)."""
    made: list[System] = []

    def make(env: dict[str, str]) -> System:
        system = System(load_config(env=env))
        made.append(system)
        return system

    yield make
    for system in made:
        system.stop()


def wait_for(
    predicate: Callable[[], object],
    timeout: float,
    what: str,
    diagnostics: Callable[[], str] = lambda: "",
) -> object:
    """Poll ``predicate`` until it returns something truthy, or fail saying what."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{diagnostics()}")
        time.sleep(0.05)


def finished(system: System, execution_id: str) -> dict | None:
    execution = system.runtime.executions.get(execution_id)
    return execution if execution["status"] in FINISHED_STATUSES else None
