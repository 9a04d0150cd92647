"""``serve`` on a busy port: one line naming the port (and who holds it), a non-zero
exit, no traceback, and nothing created — no data directory, no admin key."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipelinejobs.cli import ports
from pipelinejobs.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def busy() -> Iterator[int]:
    """A port this test process listens on."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        yield held.getsockname()[1]


def test_serve_on_a_busy_port_says_so_in_one_line_and_leaves_nothing(
    busy: int, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIPELINEJOBS_")}
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [sys.executable, "-m", "pipelinejobs.cli", "serve", "--data-dir", str(data),
         "--port", str(busy)],
        capture_output=True, text=True, timeout=60, cwd=tmp_path, env=env,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stdout == ""  # no "serving on", no admin key
    [line] = done.stderr.splitlines()
    assert line.startswith(f"pipelinejobs: error: port {busy} on 127.0.0.1 is in use")
    if sys.platform == "linux":  # the holder is this test's process
        assert f"by pid {os.getpid()} (" in line
    assert not data.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_check_free_passes_a_free_port_and_names_the_holder_of_a_busy_one(busy: int) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    ports.check_free("127.0.0.1", port)
    with pytest.raises(ConfigError, match=f"port {busy} on 127.0.0.1 is in use"):
        ports.check_free("127.0.0.1", busy)


@pytest.mark.skipif(sys.platform != "linux", reason="reads Linux's /proc")
def test_holder_reads_proc(busy: int) -> None:
    who = ports.holder(busy)
    assert who is not None and who.startswith(f"pid {os.getpid()} (")


def test_holder_is_none_where_it_cannot_tell(busy: int, tmp_path: Path) -> None:
    assert ports.holder(busy, proc=tmp_path) is None  # no /proc at all
