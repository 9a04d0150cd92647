"""Start ``pipelinejobs serve`` as a real subprocess, for tests that speak HTTP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    url: str
    admin_key: str
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_server(
    data_dir: Path,
    port: int,
    timeout: float = 30.0,
    admin_key: str | None = None,
    settings: dict[str, str] | None = None,
    module: str = "pipelinejobs.cli",
) -> Server:
    """Serve ``data_dir`` on ``port``. A new data dir prints its admin key; a restart
    on an existing one does not, so pass the key it printed then. ``settings``: extra
    ``PIPELINEJOBS_*`` environment variables for the server; ``module``: what runs
    ``serve`` (a test's own wrapper of the CLI)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINEJOBS_")}
    env.update(settings or {})
    env["PYTHONPATH"] = str(ROOT)
    # The tests run as root and these servers run local jobs: say that root may run them
    # (the embedded mode's default too, but a test should not lean on it).
    env["PIPELINEJOBS_LAUNCHER_RUN_AS"] = "root"
    log = data_dir.parent / f"serve-{port}{'-again' if admin_key else ''}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "serve",
                "--data-dir",
                str(data_dir),
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=data_dir.parent,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        text = log.read_text(errors="replace")
        found = re.search(r"^admin key: (\S+)$", text, re.MULTILINE)
        key = admin_key or (found.group(1) if found else None)
        if key and f"serving on {url}" in text:
            try:
                if requests.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return Server(url, key, proc, log)
            except requests.ConnectionError:
                pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"pipelinejobs serve did not start:\n{text}")
        time.sleep(0.1)
