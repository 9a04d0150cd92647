"""ManagedPipelineJob against a real HTTP gateway (in this process: the Flask app served
on a thread, each message delivered as it is published), and its refusals.

A real ``pipelinejobs serve`` and a script killed half way are
tests/integration/test_managed_job.py's; here each behaviour is checked on its own.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from werkzeug.serving import make_server

from pipelinejobs.client import ClientError, ManagedPipelineJob, ManagedPipelineJobError
from pipelinejobs.runtime.dispatch import Runtime
from tests.gateway.conftest import deliver_on_publish, make_app

APP = {
    "name": "Script step",
    "components": [{"id": "script-step-0.1", "inputs": {}, "parameters": {}}],
}
SAMPLE = "sample.tacc.abcde"


@dataclass
class Served:
    url: str
    runtime: Runtime
    key: str
    other_key: str
    pipeline: str

    def job(self, **options: Any) -> ManagedPipelineJob:
        options.setdefault("key", self.key)
        options.setdefault("pipeline_uuid", self.pipeline)
        options.setdefault("sample_id", SAMPLE)
        return ManagedPipelineJob(self.url, timeout=30, backoff=0.01, **options)

    def history(self, uuid: str) -> list[str]:
        return [e["name"] for e in self.runtime.jobs.record(uuid)["history"]]


@pytest.fixture
def served(runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    deliver_on_publish(runtime, monkeypatch)
    app = make_app(runtime)
    gateway = app.config["PIPELINEJOBS"]
    key, _ = gateway.keys.create("user")
    other, _ = gateway.keys.create("user")
    pipeline = runtime.pipelines.create(APP).pipeline["uuid"]
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Served(f"http://127.0.0.1:{server.port}", runtime, key, other, pipeline)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_a_job_walks_its_lifecycle(served: Served) -> None:
    job = served.job(data={"reads": 100}, index=False).setup()
    assert job.state == "CREATED" and job.uuid and len(job.token or "") == 16
    assert job.run({"host": "node-7"})["state"] == "RUNNING"
    assert job.update({"progress": 50}) == {
        "uuid": job.uuid,
        "event": "update",
        "state": "RUNNING",
        "applied": True,
        "duplicate": False,
        "indexing": None,
    }
    job.resource({"cpus": 4})
    assert job.finish()["state"] == "FINISHED"
    served.runtime.storage.write(str(job.archive_path), "out.csv", b"1,2\n")
    indexed = job.index(level="2")
    assert indexed["indexed"] == 1 and indexed["level"] == "2"
    assert job.get()["last_event"] == "indexed"
    assert served.history(str(job.uuid)) == [
        "create",
        "run",
        "update",
        "resource",
        "finish",
        "index",
        "indexed",
    ]
    record = served.runtime.jobs.record(str(job.uuid))
    assert record["data"] == {"reads": 100} and record["session"] == job.session
    assert record["history"][1]["uuid"] == served.runtime.ids.event(str(job.uuid), "key:run:1")


def test_the_same_script_run_again_converges_on_the_same_events(served: Served) -> None:
    first = served.job(data={"reads": 100}, index=False).setup()
    first.run()
    first.update({"progress": 10})
    # The script dies here and starts again from the top: a new object, the same calls.
    again = served.job(data={"reads": 100}, index=False).setup()
    assert (again.uuid, again.token) == (first.uuid, first.token)
    assert again.run()["duplicate"] is True
    assert again.update({"progress": 10})["duplicate"] is True
    assert again.update({"progress": 20})["applied"] is True  # update:2, new
    assert again.finish()["applied"] is True
    assert served.history(str(again.uuid)) == ["create", "run", "update", "update", "finish"]


def test_an_event_key_given_by_the_caller_names_the_event(served: Served) -> None:
    job = served.job(index=False).setup()
    job.run()
    assert job.update({"step": "align"}, key="align")["applied"] is True
    assert job.update({"step": "align"}, key="align")["duplicate"] is True
    assert served.history(str(job.uuid)) == ["create", "run", "update"]


def test_a_job_created_by_another_request_is_continued_with_its_token(served: Served) -> None:
    made = served.job(data={"n": 1}, index=False).setup()
    other = served.job(key=served.other_key, data={"n": 1}, index=False)
    with pytest.raises(ManagedPipelineJobError) as caught:
        other.setup()
    assert caught.value.message == (
        f"job {made.uuid} already exists and was not created by this request, so its token "
        f"is not given out: continue it with ManagedPipelineJob(..., uuid={made.uuid!r}, "
        f"token=<the token it was created with>)"
    )
    resumed = served.job(key=served.other_key, uuid=made.uuid, token=made.token)
    assert resumed.run()["state"] == "RUNNING"  # no setup needed
    assert served.job(key=served.other_key, data={"n": 1}, token=made.token).setup().uuid == (
        made.uuid
    )


def test_nonces_instead_of_a_key(served: Served) -> None:
    keyed = served.job()  # to make nonces with: a nonce cannot make nonces
    nonces = {
        actor: keyed.client.request("POST", f"/actors/v2/{actor}/nonces", body={"maxUses": -1})[
            "id"
        ]
        for actor in ("launcher-proxy", "jobs-manager", "jobs-indexer")
    }
    job = served.job(key=None, nonces=nonces, index=False).setup()
    assert job.client.key is None
    job.run()
    assert job.callback == (
        f"{served.url}/actors/v2/jobs-manager/messages?uuid={job.uuid}&token={job.token}"
        f"&x-nonce={nonces['jobs-manager']}"
    )
    # What a compute backend does with it: post its status.
    request = urllib.request.Request(job.callback + "&status=FINISHED", data=b"{}", method="POST")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310
        assert answer.status == 200
    assert served.runtime.jobs.get(str(job.uuid))["state"] == "FINISHED"
    without = served.job(key=None, nonces={"jobs-manager": nonces["jobs-manager"]}, data={"x": 1})
    with pytest.raises(ClientError) as caught:
        without.setup()  # the launcher-proxy's nonce is missing
    assert caught.value.detail["status"] == 401


def test_cancel_is_a_fail_saying_why(served: Served) -> None:
    job = served.job(index=False).setup()
    assert job.cancel("not needed")["state"] == "FAILED"
    entry = served.runtime.jobs.record(str(job.uuid))["history"][-1]
    assert entry["name"] == "fail" and entry["data"] == {"reason": "not needed"}
    assert entry["uuid"] == served.runtime.ids.event(str(job.uuid), "key:cancel:1")


def test_a_refused_event_raises_with_the_gateway_s_status_and_reason(served: Served) -> None:
    job = served.job(index=False).setup()
    job.fail({"reason": "broken"})
    with pytest.raises(ClientError) as caught:
        job.run()
    assert caught.value.detail["status"] == 409
    assert caught.value.message == (
        f"409: event 'run' is not allowed for job {job.uuid} in state FAILED; it is "
        f"allowed from: CREATED, RUNNING"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pipeline_uuid": None}, "a job needs its pipeline_uuid"),
        (
            {"sample_id": None},
            "a job needs at least one linkage id: one of experiment_design_id, experiment_id, "
            "sample_id, measurement_id",
        ),
    ],
)
def test_a_job_it_cannot_describe_is_refused_before_sending(
    served: Served, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ManagedPipelineJobError) as caught:
        served.job(**options).setup()
    assert caught.value.message == message


def test_an_event_before_setup_is_refused(served: Served) -> None:
    with pytest.raises(ManagedPipelineJobError) as caught:
        served.job().run()
    assert caught.value.message == (
        "no job yet: call setup() first (or give uuid= and token= to continue one)"
    )


def test_a_create_the_gateway_refuses_names_the_field(served: Served) -> None:
    with pytest.raises(ClientError) as caught:
        served.job(session="../up").setup()
    assert caught.value.detail["status"] == 400
    assert caught.value.message == (
        "400: PipelineJobCreate: session: '../up' does not match '^[A-Za-z0-9][A-Za-z0-9_-]{3,63}$'"
    )


# -- retries -----------------------------------------------------------------------------------


class Unsteady(ThreadingHTTPServer):
    """Answers 503 twice, then a finished execution; records what it was sent."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), UnsteadyHandler)
        self.seen: list[tuple[str | None, dict[str, Any]]] = []


class UnsteadyHandler(BaseHTTPRequestHandler):
    server: Unsteady

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        self.server.seen.append((self.headers.get("Idempotency-Key"), body))
        ok = len(self.server.seen) > 2
        result = {"id": "x", "status": "COMPLETE", "result": {"state": "RUNNING"}}
        raw = json.dumps(
            {
                "status": "success" if ok else "error",
                "message": "busy",
                "result": result if ok else {"retryable": True},
            }
        ).encode()
        self.send_response(200 if ok else 503)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


def test_a_503_is_retried_as_the_same_request() -> None:
    server = Unsteady()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        job = ManagedPipelineJob(
            f"http://127.0.0.1:{server.server_address[1]}",
            key="k",
            uuid="1071269f-b251-5a5f-bec1-6d7f77131f3f",
            token="0123456789abcdef",
            backoff=0.01,
        )
        assert job.run() == {"state": "RUNNING"}
    finally:
        server.shutdown()
        server.server_close()
    keys = {key for key, _ in server.seen}
    bodies = [body for _, body in server.seen]
    assert len(server.seen) == 3 and len(keys) == 1 and None not in keys
    assert all(body == bodies[0] for body in bodies) and bodies[0]["event_key"] == "run:1"


# -- packaging -----------------------------------------------------------------------------------


def test_importing_pipelinejobs_stays_cheap_and_the_client_needs_no_server() -> None:
    probe = (
        "import sys\n"
        "import pipelinejobs\n"
        "assert [m for m in sys.modules if m.startswith('pipelinejobs')] == ['pipelinejobs']\n"
        "from pipelinejobs import ManagedPipelineJob, ReactorManagedPipelineJob\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('pipelinejobs'))\n"
        "heavy = ('flask', 'celery', 'jsonschema', 'yaml', 'pymongo', 'redis')\n"
        "print(' '.join(loaded), '|', ' '.join(m for m in heavy if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    loaded, _, heavy = done.stdout.strip().partition(" |")
    assert loaded.split() == [
        "pipelinejobs",
        "pipelinejobs.client",
        "pipelinejobs.client.http",
        "pipelinejobs.client.managed",
        "pipelinejobs.errors",
    ]
    assert heavy.strip() == ""
