"""Every benchmark script runs in its smoke mode, so none of them can rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Helper modules (bench/_procs.py) start with "_" and are not benchmarks.
SCRIPTS = sorted(p for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_"))


#: Scripts with more than one way to run: each other way is smoked too.
MODES = [(s, []) for s in SCRIPTS] + [
    (ROOT / "bench" / "events.py", ["--mode", "redis"]),
    (ROOT / "bench" / "gateway.py", ["--mode", "embedded"]),
    (ROOT / "bench" / "events.py", ["--webhooks", "2", "--batch", "5"]),
    # Without its Prefect venv (as in CI) peers.py skips, saying why; with it, it runs.
    (ROOT / "bench" / "peers.py", ["--venv", "/nonexistent/prefect-venv"]),
]


@pytest.mark.parametrize(
    ("script", "options"), MODES, ids=[" ".join([s.name, *o]) for s, o in MODES]
)
def test_benchmark_smoke(script: Path, options: list[str], tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    done = subprocess.run(
        [sys.executable, str(script), "--smoke", "--json", str(out), *options],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    figures = json.loads(out.read_text())
    assert figures, "the benchmark wrote no figures"
    assert "baseline" in done.stdout, "every benchmark prints its baseline next to its figures"


def test_there_are_benchmarks():
    assert any(s.name == "store.py" for s in SCRIPTS)
