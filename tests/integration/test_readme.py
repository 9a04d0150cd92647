"""The README's "Try it" blocks, run in order by bash against a real server."""

from __future__ import annotations

import re
import shutil
import subprocess
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
        assert names.count("finish") == 2 and names.count("indexed") == 2
        assert "arbitrary" in str(job["history"]), "the URL-parameter event lost its body"
        files = requests.get(
            f"{server.url}/jobs/{job['uuid']}/files", headers=auth, timeout=10
        ).json()["result"]["files"]
        assert sorted((f["relative_path"], f["level"]) for f in files) == [
            ("sample-tacc-abcde.png", "2"),
            ("sample.tacc.abcde/tacos.csv", "2"),
        ]
        assert '"state": "FINISHED"' in done.stdout
    finally:
        server.stop()
