"""Launches for the docker launcher's tests, on whichever engine (engines.py)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelinejobs.adapters.launchers.base import Launch
from pipelinejobs.adapters.launchers.docker import DockerLauncher
from pipelinejobs.adapters.launchers.watched import WatchedLauncher
from tests.adapters.launchers.callbacks import Capture

UUID = "1073f4ff-c2b9-5190-bd9a-e6a406d9796a"
TOKEN = "0dc73dc3ff39b49a"
IMAGE = "example/tacobot:0.1"
PIPELINE = {"components": [{"repo": IMAGE}]}


def container(image: str = IMAGE, **options: Any) -> dict[str, Any]:
    """A pipeline whose container component runs ``image`` with ``options``."""
    return {"components": [{"repo": image, **({"options": options} if options else {})}]}


def launch_of(
    tmp_path: Path,
    capture: Capture,
    pipeline: dict[str, Any] | None = None,
    launch_id: str = "",
    **definition: Any,
) -> Launch:
    base = (
        f"{capture.url}/actors/v2/jobs-manager/messages?uuid={UUID}&token={TOKEN}&x-nonce=PJ_test"
    )
    return Launch(
        job={"uuid": UUID, "archive_system": "test-system"},
        pipeline=PIPELINE if pipeline is None else pipeline,
        job_definition={"appId": "tacobot-0.1", **definition},
        archive_path="/products/job",
        archive_dir=tmp_path / "archive" / "products" / "job",
        token=TOKEN,
        report=lambda status, body: "unused",
        callback_base=base,
        log_path=tmp_path / "logs" / f"{UUID}.log",
        launch_id=launch_id,
    )


def join_watchers() -> None:
    """Wait for every supervisor this process started to end (they report first)."""
    for thread in list(WatchedLauncher.watchers):
        thread.join(timeout=60)
        assert not thread.is_alive()


def run_to_end(url: str, launch: Launch, **options: Any) -> dict[str, Any]:
    """Launch on the engine at ``url``, wait for the job's end; what was started."""
    started = DockerLauncher(url, **options).launch(launch)
    join_watchers()
    return started


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
