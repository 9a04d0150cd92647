"""The virtual environment the Prefect server runs from, made on first use by
``bench/peers.py`` (not a benchmark: names starting with ``_`` are skipped).

Prefect is the peer measured against, not a dependency: it lives in a venv of its
own outside the repository (``~/.cache/pipelinejobs-bench/prefect-<version>`` unless
``--venv`` says otherwise), so the project's environment and the test suite never
install it, and the benchmark's own interpreter never imports it — only the server
runs from there.

Prefect 3.9.1 asks for a ``certifi`` newer than the registry here may hold, while any
certifi works for a server on loopback. So the venv is made in two steps: Prefect's
requirements (read from its wheel's metadata) without that pin, then Prefect itself
with ``--no-deps``. A stamp file written last marks a finished venv, so an install
that failed half-way is redone instead of half-used.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

VERSION = "3.9.1"
#: Requirements whose version pin is dropped (see the module's docstring).
UNPINNED = {"certifi"}


class PrefectUnavailable(RuntimeError):
    """The Prefect venv is absent (and was not to be made) or could not be made."""


def default_venv() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "pipelinejobs-bench" / f"prefect-{VERSION}"


def stamp(venv: Path) -> Path:
    return venv / ".bench-ready"


def executable(venv: Path) -> Path:
    """The ``prefect`` command of a finished venv; PrefectUnavailable otherwise."""
    command = venv / "bin" / "prefect"
    if not stamp(venv).exists() or not command.exists():
        raise PrefectUnavailable(
            f"no Prefect venv at {venv}: make it with `python bench/peers.py --setup` "
            "(a full run makes it too; --smoke never installs anything)"
        )
    return command


def requirements(wheel: Path) -> list[str]:
    """Prefect's own requirements (no extras), each with its environment marker,
    pins removed from the names in UNPINNED."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = archive.read(name).decode()
    out = []
    for line in metadata.splitlines():
        if not line.startswith("Requires-Dist: ") or "extra ==" in line:
            continue
        requirement = line.removeprefix("Requires-Dist: ").strip()
        project = re.match(r"[A-Za-z0-9_.-]+", requirement)
        if project and project[0].lower() in UNPINNED:
            marker = requirement.partition(";")[2]
            requirement = project[0] + (f"; {marker.strip()}" if marker else "")
        out.append(requirement)
    return out


def make(venv: Path, log: Callable[[str], object] = print) -> Path:
    """Make the venv if it is not finished yet; its ``prefect`` command."""
    if stamp(venv).exists():
        return executable(venv)
    log(f"making the Prefect {VERSION} venv at {venv} (once; a few minutes)")
    python = venv / "bin" / "python"

    def run(*argv: str | Path) -> None:
        done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=1800)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout)[-2000:]
            raise PrefectUnavailable(f"{' '.join(map(str, argv[:6]))} ... failed:\n{tail}")

    try:
        run(sys.executable, "-m", "venv", "--clear", venv)
        run(python, "-m", "pip", "install", "--quiet", "--upgrade", "pip")
        with tempfile.TemporaryDirectory(prefix="bench-prefect-") as tmp:
            run(python, "-m", "pip", "download", "--quiet", "--no-deps", "-d", tmp,
                f"prefect=={VERSION}")  # fmt: skip
            wheel = next(Path(tmp).glob("prefect-*.whl"))
            wanted = Path(tmp) / "requirements.txt"
            wanted.write_text("\n".join(requirements(wheel)) + "\n")
            run(python, "-m", "pip", "install", "--quiet", "-r", wanted)
            run(python, "-m", "pip", "install", "--quiet", "--no-deps", wheel)
    except (OSError, StopIteration, subprocess.TimeoutExpired) as exc:
        raise PrefectUnavailable(f"could not make the Prefect venv at {venv}: {exc}") from exc
    stamp(venv).write_text(f"prefect=={VERSION}\n")
    return executable(venv)
