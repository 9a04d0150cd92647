"""A script using ManagedPipelineJob against a real ``pipelinejobs serve``: it walks a
job create → run → update → finish → indexed, is killed half way (SIGKILL, no cleanup),
and the same script run again continues the same job without duplicating any event."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import requests

from .conftest import _free_port
from .server import ROOT, start_server

SCRIPT = """
import os, signal, time
from pathlib import Path

from pipelinejobs import ManagedPipelineJob

job = ManagedPipelineJob(
    os.environ["PJ_URL"],
    key=os.environ["PJ_KEY"],
    pipeline_uuid=os.environ["PJ_PIPELINE"],
    sample_id="sample.tacc.abcde",
    data={"reads": 1000},
    index=False,
)
job.setup()
print("job", job.uuid, flush=True)
job.run({"host": "here"})
job.update({"progress": 50})
if os.environ.get("PJ_DIE_HALF_WAY"):
    os.kill(os.getpid(), signal.SIGKILL)  # no finally, no atexit: as a crash
# The compute's outputs, written where the job archives.
out = Path(os.environ["PJ_ARCHIVE_ROOT"] + job.archive_path)
out.mkdir(parents=True, exist_ok=True)
(out / "tacos.csv").write_text("eggs,salsa\\n2,1\\n")
job.update({"progress": 100})
job.finish()
job.index(level="1")
deadline = time.monotonic() + 60
while job.get()["last_event"] != "indexed":
    assert time.monotonic() < deadline, "never indexed"
    time.sleep(0.1)
print("done", job.uuid, job.get()["state"], flush=True)
"""

APP = {
    "name": "script step",
    "components": [{"id": "script-step-0.1", "inputs": {}, "parameters": {}}],
}


def test_a_killed_script_run_again_continues_the_same_job(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_server(data, _free_port())
    http = requests.Session()
    try:
        admin = {"Authorization": f"Bearer {server.admin_key}"}
        registered = http.post(
            f"{server.url}/actors/v2/pipelines-manager/messages",
            params={"_abaco_synchronous": "true"},
            json=APP,
            headers=admin,
            timeout=30,
        )
        assert registered.status_code == 200, registered.text
        pipeline = registered.json()["result"]["result"]["uuid"]
        script = tmp_path / "step.py"
        script.write_text(SCRIPT)
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "PJ_URL": server.url,
            "PJ_KEY": server.admin_key,
            "PJ_PIPELINE": pipeline,
            "PJ_ARCHIVE_ROOT": str(data / "archive"),
        }

        def run_script(**extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, str(script)],
                env={**env, **extra},
                capture_output=True,
                text=True,
                timeout=120,
            )

        killed = run_script(PJ_DIE_HALF_WAY="1")
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        uuid = killed.stdout.split()[1]

        def history() -> list[dict]:
            answer = http.get(f"{server.url}/jobs/{uuid}/history", headers=admin, timeout=10)
            assert answer.status_code == 200, answer.text
            return answer.json()["result"]["history"]

        assert [e["name"] for e in history()] == ["create", "run", "update"]

        again = run_script()
        assert again.returncode == 0, again.stderr
        assert again.stdout.splitlines() == [f"job {uuid}", f"done {uuid} FINISHED"]
        entries = history()
        assert [e["name"] for e in entries] == [
            "create",
            "run",
            "update",
            "update",
            "finish",
            "index",
            "indexed",
        ]
        assert [e["data"].get("progress") for e in entries if e["name"] == "update"] == [50, 100]
        assert len({e["uuid"] for e in entries}) == len(entries)

        # Once more, whole: every event is already there, so nothing is added.
        third = run_script()
        assert third.returncode == 0, third.stderr
        assert history() == entries
        files = http.get(f"{server.url}/jobs/{uuid}/files", headers=admin, timeout=10)
        assert [f["relative_path"] for f in files.json()["result"]["files"]] == ["tacos.csv"]
        # Its lineage from the command line: up to its pipeline and sample, down to its file.
        tree = subprocess.run(
            [sys.executable, "-m", "pipelinejobs.cli", "lineage", uuid],
            env={**env, "PIPELINEJOBS_URL": server.url, "PIPELINEJOBS_KEY": server.admin_key},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert tree.returncode == 0, tree.stderr
        lines = tree.stdout.splitlines()
        assert lines[0] == f"job {uuid}  FINISHED" and tree.stderr == ""
        assert f"│   ├── generated_by  pipeline {pipeline}  script step" in lines
        assert "│   └── child_of  linkage sample.tacc.abcde (sample)" in lines
        assert any(line.startswith("    └── generated_by  file 105") for line in lines)
    finally:
        http.close()
        server.stop()
    assert "Traceback" not in server.output(), server.output()[-3000:]
