"""Who may run what, over HTTP: compute is defined by pipelines, not by messages.

A user key or an EXECUTE nonce cannot make the system run a command or an image that
no admin-registered pipeline declares: it cannot register such a pipeline (403,
nothing stored), cannot put compute in a launch (400 naming the field), cannot steer
a pipeline onto a backend its component does not run on, and what it may set — the
component's declared variables — reaches the job as literal argv elements and
environment, never through a shell. The local backend runs real processes (their
callbacks go to a capture server); the docker backend runs against the fake engine.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pipelinejobs.adapters.launchers.watched import WatchedLauncher
from pipelinejobs.runtime.dispatch import Runtime
from tests.adapters.launchers.callbacks import Capture
from tests.adapters.launchers.fake_docker import FakeEngine
from tests.gateway.conftest import (
    MESSAGES,
    SYNC,
    bearer,
    deliver_on_publish,
    error_of,
    result_of,
)

APP_ID = "step-0.1"
IMAGE = "example/step:0.1"
SCRIPT = "import os, sys; print('argv', sys.argv[1:], 'env', os.environ.get('SAMPLE'))"
COMMAND_PIPELINE = {
    "name": "A local step",
    "components": [
        {
            "id": APP_ID,
            "command": [sys.executable, "-c", SCRIPT, "${SAMPLE}"],
            "variables": {"SAMPLE": {"description": "the sample to process"}},
        }
    ],
}
CONTAINER_PIPELINE = {
    "name": "A containerised step",
    "components": [
        {
            "repo": IMAGE,
            "options": {
                "command": ["python3", "/opt/step.py", "${SAMPLE}"],
                "variables": {"SAMPLE": {"pattern": "[^\\n]{1,200}"}},
            },
        }
    ],
}
APP_PIPELINE = {
    "name": "An Agave app",
    "components": [
        {"id": "tacobot-0.1", "inputs": {}, "parameters": {"CONTAINER_IMAGE": "evil/miner:1"}}
    ],
}
#: What a hostile caller puts in a variable: each must arrive as this very text.
HOSTILE = "x; rm -rf / $(id) `id` ${HOME} | tee"


@pytest.fixture
def capture() -> Iterator[Capture]:
    server = Capture()
    yield server
    server.close()


@pytest.fixture
def engine() -> Iterator[FakeEngine]:
    fake = FakeEngine()
    yield fake
    fake.close()


@pytest.fixture
def world(
    build: Callable[..., tuple[Runtime, Flask]],
    capture: Capture,
    engine: FakeEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[tuple[Runtime, FlaskClient, dict[str, dict[str, str]]]]:
    """A gateway whose worker runs in the request, launching for real: local jobs
    (allowed to run as root: these tests run as root) and docker on the fake engine.
    Credentials: ``admin``, ``user`` (a user key) and ``nonce`` (an EXECUTE nonce an
    admin made for each actor, so it is not merely a user's)."""
    rt, app = build(
        launcher={
            "backend": "auto",
            "public_url": capture.url,
            "docker_url": engine.url,
            "run_as": "root",
        }
    )
    deliver_on_publish(rt, monkeypatch)
    admin_key, _ = app.config["PIPELINEJOBS"].keys.create("admin")
    user_key, _ = app.config["PIPELINEJOBS"].keys.create("user")
    client = app.test_client()
    nonces = {}
    for actor in ("pipelines-manager", "launcher-proxy"):
        created = client.post(
            f"/actors/v2/{actor}/nonces", json={"level": "EXECUTE"}, headers=bearer(admin_key)
        )
        nonces[actor] = result_of(created, 201)["id"]
    yield rt, client, {"admin": bearer(admin_key), "user": bearer(user_key), "nonce": nonces}
    for thread in list(WatchedLauncher.watchers):
        thread.join(timeout=60)


def post(
    client: FlaskClient,
    credentials: dict[str, Any],
    who: str,
    actor: str,
    message: dict[str, Any],
) -> Any:
    """POST ``message`` to ``actor`` (synchronously) as ``who``."""
    if who == "nonce":
        query = {**SYNC, "x-nonce": credentials["nonce"][actor]}
        return client.post(MESSAGES.format(actor), json=message, query_string=query)
    return client.post(
        MESSAGES.format(actor), json=message, query_string=SYNC, headers=credentials[who]
    )


def register(client: FlaskClient, credentials: dict[str, Any], definition: dict) -> str:
    done = result_of(post(client, credentials, "admin", "pipelines-manager", definition))
    assert done["status"] == "COMPLETE", done
    return str(done["result"]["uuid"])


def launch_message(pipeline: str, **definition: Any) -> dict[str, Any]:
    return {
        "pipeline_uuid": pipeline,
        "parameters": {"sample_id": "sample.tacc.rights"},
        "job_definition": definition,
        "data": {"case": repr(sorted(definition.items()))},
    }


# -- registering what runs -----------------------------------------------------------------------


@pytest.mark.parametrize("who", ["user", "nonce"])
@pytest.mark.parametrize(
    "definition", [COMMAND_PIPELINE, CONTAINER_PIPELINE], ids=["command", "container"]
)
def test_only_an_admin_key_registers_a_pipeline_that_runs_here(world, who, definition):
    rt, client, credentials = world
    executions = rt.store.count("executions")

    error = error_of(post(client, credentials, who, "pipelines-manager", definition), 403)

    assert error["message"].startswith(
        "registering a pipeline that runs local commands or containers needs an admin key"
    )
    assert error["result"]["path"] == "components/0"
    assert rt.store.count("pipelines") == 0
    assert rt.store.count("executions") == executions  # nothing was stored

    register(client, credentials, definition)  # an admin key may
    assert rt.store.count("pipelines") == 1


@pytest.mark.parametrize("who", ["user", "nonce"])
def test_anyone_registers_a_pipeline_whose_jobs_run_elsewhere(world, who):
    rt, client, credentials = world
    done = result_of(post(client, credentials, who, "pipelines-manager", APP_PIPELINE))
    assert done["status"] == "COMPLETE" and done["result"]["created"] is True


def test_a_user_holding_the_token_may_not_update_or_enable_it_but_may_disable_it(world):
    rt, client, credentials = world
    created = result_of(post(client, credentials, "admin", "pipelines-manager", COMMAND_PIPELINE))
    uuid, token = created["result"]["uuid"], created["result"]["token"]

    def as_user(message: dict[str, Any]) -> Any:
        return post(client, credentials, "user", "pipelines-manager", {**message, "uuid": uuid})

    update = {"action": "update", "body": {"name": "renamed"}, "token": token}
    assert "updating a pipeline" in error_of(as_user(update), 403)["message"]
    disabled = result_of(as_user({"action": "disable", "token": token}))
    assert disabled["status"] == "COMPLETE" and disabled["result"]["status"] == "disabled"
    assert (
        "enabling a pipeline"
        in error_of(as_user({"action": "enable", "token": token}), 403)["message"]
    )
    assert rt.store.get("pipelines", uuid)["name"] == COMMAND_PIPELINE["name"]


@pytest.mark.parametrize(("component", "path"), [
    ({"id": "x", "command": ["run", "${NOPE}"]}, "components/0/command/1"),
    ({"id": "x", "command": ["run"], "variables": {"V": {"pattern": "(a"}}},
     "components/0/variables/V/pattern"),
    ({"id": "x", "command": "run --all"}, "components/0/command"),
])  # fmt: skip
def test_a_runnable_component_that_makes_no_sense_is_400_at_registration(world, component, path):
    rt, client, credentials = world
    executions = rt.store.count("executions")
    definition = {"name": "p", "components": [component]}
    error = error_of(post(client, credentials, "admin", "pipelines-manager", definition), 400)
    assert error["result"]["path"] == path
    assert rt.store.count("executions") == executions and rt.store.count("pipelines") == 0


def test_the_worker_checks_the_role_again(world):
    # An execution that reached the queue without passing ``admit`` (stored by an
    # older gateway, or written by hand) is refused by the worker all the same.
    rt, client, credentials = world
    execution, _ = rt.executions.submit("pipelines-manager", COMMAND_PIPELINE, role="user")
    rt.deliver("pipelines-manager", execution["id"])

    done = rt.executions.get(execution["id"])
    assert done["status"] == "ERROR" and done["error"]["error"] == "PermissionDenied"
    assert rt.store.count("pipelines") == 0


# -- launching: what a message may not say ----------------------------------------------------


@pytest.mark.parametrize("who", ["user", "nonce", "admin"])
@pytest.mark.parametrize(("field", "value"), [
    ("command", ["sh", "-c", "id > /tmp/pwned"]),
    ("image", "evil/miner:1"),
    ("entrypoint", ["/bin/sh"]),
    ("environment", {"LD_PRELOAD": "/tmp/evil.so"}),
])  # fmt: skip
def test_a_launch_cannot_say_what_runs(world, who, field, value):
    rt, client, credentials = world
    pipeline = register(client, credentials, APP_PIPELINE)
    executions = rt.store.count("executions")

    message = launch_message(pipeline, appId="tacobot-0.1", **{field: value})
    error = error_of(post(client, credentials, who, "launcher-proxy", message), 400)

    assert error["result"]["path"] == f"job_definition/{field}"
    assert "compute is defined by the pipeline's component" in error["message"]
    assert rt.store.count("executions") == executions and rt.store.count("jobs") == 0


@pytest.mark.parametrize("who", ["user", "nonce"])
@pytest.mark.parametrize("backend", ["local", "docker"])
def test_a_launch_cannot_move_an_app_onto_a_backend_that_runs_things_here(
    world, engine, who, backend
):
    rt, client, credentials = world
    pipeline = register(client, credentials, APP_PIPELINE)  # its CONTAINER_IMAGE is not ours

    message = launch_message(pipeline, appId="tacobot-0.1", launcher=backend)
    error = error_of(post(client, credentials, who, "launcher-proxy", message), 400)

    assert error["result"]["path"] == "job_definition/launcher"
    assert error["result"]["allowed"] == ["inline", "callback"]
    assert rt.store.count("jobs") == 0 and engine.calls == []


@pytest.mark.parametrize("who", ["user", "nonce"])
@pytest.mark.parametrize(("parameters", "path"), [
    ({"SAMPLE": "s1", "CMD": "id"}, "job_definition/parameters/CMD"),
    ({"PATH": "/tmp/evil"}, "job_definition/parameters/PATH"),
    ({"SAMPLE": ["a", "b"]}, "job_definition/parameters/SAMPLE"),
])  # fmt: skip
def test_an_undeclared_or_malformed_variable_is_400_with_its_path(world, who, parameters, path):
    rt, client, credentials = world
    pipeline = register(client, credentials, COMMAND_PIPELINE)
    executions = rt.store.count("executions")

    message = launch_message(pipeline, appId=APP_ID, parameters=parameters)
    error = error_of(post(client, credentials, who, "launcher-proxy", message), 400)

    assert error["result"]["path"] == path
    if "SAMPLE" not in path:
        assert error["result"]["allowed"] == ["SAMPLE"]
        assert "it declares: SAMPLE" in error["message"]
    assert rt.store.count("executions") == executions and rt.store.count("jobs") == 0


# -- launching: what runs is the pipeline's ---------------------------------------------------


@pytest.mark.parametrize("who", ["user", "nonce"])
def test_a_local_job_runs_the_pipelines_argv_with_the_variable_as_one_element(world, capture, who):
    rt, client, credentials = world
    pipeline = register(client, credentials, COMMAND_PIPELINE)

    message = launch_message(pipeline, appId=APP_ID, parameters={"SAMPLE": HOSTILE})
    done = result_of(post(client, credentials, who, "launcher-proxy", message))
    assert done["status"] == "COMPLETE", done
    for thread in list(WatchedLauncher.watchers):
        thread.join(timeout=60)

    result = done["result"]
    assert result["launch"]["backend"] == "local"
    log = (rt.config.log_dir / f"{result['uuid']}.log").read_text()
    assert f"argv {[HOSTILE]!r} env {HOSTILE}" in log
    assert capture.statuses() == ["RUNNING", "FINISHED"]


@pytest.mark.parametrize("who", ["user", "nonce"])
def test_a_docker_job_runs_the_pipelines_image_and_argv(world, engine, who):
    rt, client, credentials = world
    engine.images.add(IMAGE)
    pipeline = register(client, credentials, CONTAINER_PIPELINE)

    message = launch_message(pipeline, parameters={"SAMPLE": HOSTILE})
    done = result_of(post(client, credentials, who, "launcher-proxy", message))
    assert done["status"] == "COMPLETE", done
    for thread in list(WatchedLauncher.watchers):
        thread.join(timeout=60)

    assert done["result"]["launch"]["backend"] == "docker"
    (create,) = engine.requested("POST", "/containers/create")
    assert create.body["Image"] == IMAGE
    assert create.body["Cmd"] == ["python3", "/opt/step.py", HOSTILE]
    assert f"SAMPLE={HOSTILE}" in create.body["Env"]
    assert engine.requested("POST", "/images/create") == []  # nothing else was pulled


def test_a_backend_the_deployment_does_not_allow_is_refused_before_anything_is_stored(
    build: Callable[..., tuple[Runtime, Flask]], capture: Capture
):
    rt, app = build(launcher={"backend": "auto", "backends": "inline, docker, callback"})
    client = app.test_client()
    admin = bearer(app.config["PIPELINEJOBS"].keys.create("admin")[0])
    credentials = {"admin": admin}
    pipeline = rt.pipelines.create(COMMAND_PIPELINE).pipeline["uuid"]

    message = launch_message(pipeline, appId=APP_ID, parameters={"SAMPLE": "s1"})
    error = error_of(post(client, credentials, "admin", "launcher-proxy", message), 403)

    assert "does not run jobs on the local backend" in error["message"]
    assert error["result"]["allowed"] == ["inline", "docker", "callback"]
    assert rt.store.count("executions") == 0 and rt.store.count("jobs") == 0
