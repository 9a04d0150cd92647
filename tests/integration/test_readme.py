"""The README's "Try it" blocks, run in order by bash against a real server."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from .conftest import _free_port
from .server import ROOT, start_server


def try_it_script() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("<!-- try-it:start -->", 1)[1].split("<!-- try-it:end -->", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.DOTALL)
    assert len(blocks) >= 6, "the README lost its examples"
    return "\n".join(blocks)


def cli_walk() -> list[tuple[str, str]]:
    """The README's CLI session: (command, what it prints) pairs. A command goes on while
    its single quotes are open or its line ends with a backslash."""
    text = (ROOT / "README.md").read_text()
    section = text.split("<!-- cli-walk:start -->", 1)[1].split("<!-- cli-walk:end -->", 1)[0]
    [block] = re.findall(r"```console\n(.*?)```", section, re.DOTALL)
    steps: list[tuple[str, list[str]]] = []
    open_command = False
    for line in block.splitlines():
        if open_command:
            command = steps[-1][0] + "\n" + line
            steps[-1] = (command, [])
        elif line.startswith("$ "):
            command = line[2:]
            steps.append((command, []))
        else:
            steps[-1][1].append(line)
            continue
        open_command = command.count("'") % 2 == 1 or command.endswith("\\")
    return [(command, "\n".join(lines)) for command, lines in steps]


DATE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
#: What differs from run to run: archive paths, uuids, dates, update tokens, execution ids.
VARYING = re.compile(
    r"/products/v2/\S+"
    r"|\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b"
    rf"|{DATE.pattern}"
    r"|\b[0-9a-f]{16}\b"
    # An execution id: 13 of [A-Za-z0-9], not all lower case (no word of the output).
    r"|\b(?=[A-Za-z0-9]{13}\b)(?=[a-z]*[A-Z0-9])[A-Za-z0-9]{13}\b"
)


def shape(text: str) -> list[str]:
    """``text`` with what varies replaced by its kind, spaces collapsed (columns are
    as wide as what they hold)."""

    def kind(found: re.Match[str]) -> str:
        value = found.group()
        return "<path>" if value.startswith("/") else f"<{len(value)}>"

    return [" ".join(VARYING.sub(kind, line).split()) for line in text.strip().splitlines()]


def run_cli_walk(work: Path, env: dict[str, str]) -> None:
    """Each command of the README's CLI session, with the ids the README shows replaced
    by those this run made: its stdout as shown (what varies aside, each id standing for
    the same one throughout), its stderr empty."""
    seen: dict[str, str] = {}  # an id in the README -> the one this run printed
    for command, expected in cli_walk():
        for shown, real in seen.items():
            command = command.replace(shown, real)
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0 and done.stderr == "", (command, done.stdout, done.stderr)
        assert shape(done.stdout) == shape(expected), (command, done.stdout)
        for shown, real in zip(
            VARYING.findall(expected), VARYING.findall(done.stdout), strict=True
        ):
            if not DATE.fullmatch(shown):  # two events may share a date, or not
                assert seen.setdefault(shown, real) == real, (command, shown, real)


def test_readme_examples_run_against_a_real_server(tmp_path: Path) -> None:
    if not (shutil.which("curl") and shutil.which("jq")):
        pytest.skip("curl and jq are needed to run the README's examples")
    server = start_server(tmp_path / "data", _free_port())
    try:
        work = tmp_path / "work"
        work.mkdir()
        env = {
            "PATH": "/usr/bin:/bin:/usr/local/bin",
            "PJ": server.url,
            "KEY": server.admin_key,
            "HOME": str(tmp_path),
        }
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", try_it_script()],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stdout + done.stderr + server.output()
        auth = {"Authorization": f"Bearer {server.admin_key}"}
        jobs = requests.get(f"{server.url}/jobs", headers=auth, timeout=10).json()
        [job] = jobs["result"]["jobs"]
        job = requests.get(f"{server.url}/jobs/{job['uuid']}", headers=auth, timeout=10).json()[
            "result"
        ]
        names = [h["name"] for h in job["history"]]
        assert job["state"] == "FINISHED"
        assert names[:3] == ["create", "run", "run"]
        # The first finish indexed it automatically; the repeated one did not again.
        assert names[3:6] == ["finish", "index", "indexed"] and names[6] == "finish"
        assert names.count("finish") == 2 and names.count("indexed") == 3
        assert "arbitrary" in str(job["history"]), "the URL-parameter event lost its body"
        files = requests.get(
            f"{server.url}/jobs/{job['uuid']}/files", headers=auth, timeout=10
        ).json()["result"]["files"]
        assert sorted((f["relative_path"], f["level"]) for f in files) == [
            ("notes.txt", "1"),
            ("sample-tacc-abcde.png", "2"),
            ("sample.tacc.abcde/tacos.csv", "2"),
        ]
        assert '"state": "FINISHED"' in done.stdout
        # Then the CLI, with the venv's pipelinejobs.
        env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
        env.update(PIPELINEJOBS_URL=server.url, PIPELINEJOBS_KEY=server.admin_key)
        run_cli_walk(work, env)
    finally:
        server.stop()
