"""Webhooks over real HTTP against ``pipelinejobs serve`` (issue 16): a receiver on
loopback, answering 500 at first, gets every state change of a 20-job run — each
once after de-duplication, in order per job, signed — through the retries."""

from __future__ import annotations

from pathlib import Path

import requests

from tests.webhook_receiver import receiver

from .conftest import _free_port
from .server import start_server

APP = "webhook-test-app"
SETTINGS = {
    "PIPELINEJOBS_LAUNCHER_BACKEND": "inline",
    "PIPELINEJOBS_WEBHOOKS_RETRY_BASE": "0.2",
    "PIPELINEJOBS_WEBHOOKS_RETRY_CAP": "0.5",
}


def test_a_run_reaches_a_flaky_receiver_over_http(tmp_path: Path) -> None:
    server = start_server(tmp_path / "data", _free_port(), settings=SETTINGS)
    http = requests.Session()
    admin = {"Authorization": f"Bearer {server.admin_key}"}

    def post(actor: str, body: dict) -> dict:
        answer = http.post(f"{server.url}/actors/v2/{actor}/messages", json=body,
                           params={"sync": "true"}, headers=admin, timeout=60)  # fmt: skip
        assert answer.status_code == 200, answer.text
        execution = answer.json()["result"]
        assert execution["status"] == "COMPLETE", execution
        return dict(execution["result"])

    try:
        with receiver() as hook:
            hook.answer = lambda n: 500 if n < 8 else 200
            pipeline = post("pipelines-manager", {
                "name": "Hooked", "components": [{"id": APP, "inputs": {}, "parameters": {}}],
            })["uuid"]  # fmt: skip
            run = post("launcher-proxy", {"action": "create_run", "pipeline_uuid": pipeline,
                                          "name": "hooked"})["uuid"]  # fmt: skip
            made = http.post(f"{server.url}/webhooks", headers=admin, timeout=30,
                             json={"url": hook.url, "filter": {"runs": [run]}})  # fmt: skip
            assert made.status_code == 201, made.text
            sub = made.json()["result"]
            hook.secret = sub["secret"]
            jobs = [
                post("launcher-proxy", {"parameters": {"sample_id": f"sample.hook.{i}"},
                                        "job_definition": {"appId": APP}, "run": run})["uuid"]
                for i in range(20)
            ]  # fmt: skip

            def history(uuid: str) -> list[str]:
                answer = http.get(f"{server.url}/jobs/{uuid}/history", headers=admin, timeout=30)
                return [entry["name"] for entry in answer.json()["result"]["history"]]

            def complete() -> bool:
                got = hook.by_job()
                return all(len(got.get(u, [])) == len(history(u)) for u in jobs)

            hook.wait_for(complete, timeout=60)
            got = hook.by_job()
            for uuid in jobs:
                names = history(uuid)
                assert "finish" in names
                assert got[uuid] == list(range(1, len(names) + 1))
                delivered = [b["event"]["name"] for b in hook.events() if b["job"]["uuid"] == uuid]
                assert delivered == names
            assert sum(1 for a in hook.arrivals if a.status == 500) == 8

        deliveries = http.get(f"{server.url}/webhooks/{sub['id']}/deliveries",
                              params={"limit": 500}, headers=admin, timeout=30)  # fmt: skip
        records = deliveries.json()["result"]["deliveries"]
        assert sum(1 for d in records if d["status_code"] == 500) == 8
        assert any(d["attempt"] >= 1 for d in records)  # the retries' own deliveries
        shown = http.get(f"{server.url}/webhooks/{sub['id']}", headers=admin, timeout=30)
        assert shown.json()["result"]["enabled"] is True
        assert sub["secret"] not in server.output()
    finally:
        server.stop()
